"""Revision requests: a conversation that carries the model's earlier answer and a further user message.

The contract with the revising client (`poemlib annotate --revise N`): the server meter-checks the draft it answered,
and the revision message *names* a violation when it contains the violation's rule name (`Violation.rule`, e.g. 失粘,
出韵), its character (`Violation.char`, when it has one) and its line written as ``第N句`` (`Violation.line`, when it
has one). Every violation named → the reference poem; none or only some → the same draft again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poemlib.offline.gemini.wire import Conversation
from poemlib.schema import Annotation

if TYPE_CHECKING:
    from poemlib.meter import MeterReport, Violation


def revision_message(conversation: Conversation) -> str | None:
    """The user text after the model's last answer, or None for a first request (no model turn)."""
    turns = conversation.turns
    last_model = max((i for i, turn in enumerate(turns) if turn.role == "model"), default=None)
    if last_model is None:
        return None
    return "\n".join(turn.text for turn in turns[last_model + 1 :] if turn.role == "user")


def first_user_text(conversation: Conversation) -> str:
    """The user text before the model's first answer (the request itself, without revision messages)."""
    texts: list[str] = []
    for turn in conversation.turns:
        if turn.role == "model":
            break
        texts.append(turn.text)
    return "\n".join(texts)


def names(message: str, violation: Violation) -> bool:
    """True when the message names the violation: its rule, its character and its line as 第N句."""
    if violation.rule not in message:
        return False
    if violation.char and violation.char not in message:
        return False
    return violation.line is None or f"第{violation.line}句" in message


def draft_report(draft: Annotation) -> MeterReport:
    """The meter report of a draft (a draft always has a poem to check)."""
    # The 格律 engine loads only for servers that replay drafts.
    from poemlib.meter import check_annotation

    report = check_annotation(draft)
    if report is None:
        raise ValueError(f"draft {draft.poem_title!r} has no poem to check")
    return report


@dataclass(frozen=True)
class RevisionVerdict:
    """What a revision message named of the draft's violations, and whether that earns the reference."""

    message: str
    violations: tuple[Violation, ...]
    named: tuple[Violation, ...]

    @property
    def all_named(self) -> bool:
        """Every violation of the draft is named (a draft without violations needs nothing named)."""
        return len(self.named) == len(self.violations)

    def log_entry(self, identity: str | None, round_no: int, answer: str) -> dict[str, Any]:
        """The server log's record of this revision request."""
        named_ids = {id(v) for v in self.named}
        return {
            "identity": identity,
            "round": round_no,
            "message": self.message,
            "violations": [v.short() for v in self.violations],
            "named": [v.short() for v in self.named],
            "missing": [v.short() for v in self.violations if id(v) not in named_ids],
            "answer": answer,
        }


def judge_revision(message: str, report: MeterReport) -> RevisionVerdict:
    """Which of the report's violations the revision message names."""
    violations = tuple(report.violations)
    return RevisionVerdict(message, violations, tuple(v for v in violations if names(message, v)))
