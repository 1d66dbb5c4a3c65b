"""The online revision loop of one image: continue its conversation with the meter's findings until the poem passes
or `revise_rounds` rounds are done; every finished round is written to the store before the next is asked."""

from __future__ import annotations

from typing import Any

from poemlib.annotate.revision import load_revise_prompt
from poemlib.annotate.rounds import (
    continued_contents,
    first_round_of,
    make_round,
    with_rounds,
)
from poemlib.schema import AnnotationRecord, Revision, Status


class Reviser:
    """Revision rounds for an online run; `annotator` provides `ask_recovering(contents)`, the session `s` and `cfg`."""

    def __init__(self, annotator: Any) -> None:
        self.annotator = annotator
        self.session = annotator.s
        self.rounds = annotator.cfg.revise_rounds
        self.prompt = load_revise_prompt(annotator.cfg)

    def _record(self, base: AnnotationRecord, first: Revision, revisions: list[Revision]) -> AnnotationRecord:
        return with_rounds(base, first, revisions, rounds=self.rounds, prompt_version=self.prompt.version)

    async def revise(self, record: AnnotationRecord, first_contents: list[Any]) -> AnnotationRecord:
        """The record after the remaining rounds (the caller writes it); rounds before the last are written here."""
        first = first_round_of(record)
        revisions = list(record.revisions)
        current = self._record(record, first, revisions)
        if record.first_answer is None:
            await self.session.awrite(current, final=False)  # round 0 on disk: a crash from here on resumes the rounds
        while len(revisions) < self.rounds:
            contents = continued_contents(first_contents, [first, *revisions], self.prompt)
            if contents is None:
                break  # the last answer passes, or cannot be checked: nothing to name
            turn = await self.annotator.ask_recovering(contents)
            number = len(revisions) + 1
            revisions.append(make_round(number, turn.outcome, attempts=turn.attempts, latency_s=turn.latency_s, prompt_version=self.prompt.version))
            self.session.summary.revision_requests += 1
            current = self._record(record, first, revisions)
            done = revisions[-1].status is not Status.ok or bool(revisions[-1].meter and revisions[-1].meter.passes)
            if done or len(revisions) >= self.rounds:
                break
            await self.session.awrite(current, final=False)
        return current
