"""Answers from the sample references: which photo a request shows, and which recorded annotation it gets.

`Replay.choose` is the one place that decides what a model call answers, from the photo's identity and the whole
conversation (earlier model turns and the user's text included). A known fit photo with a draft (data/sample/
drafts.jsonl) gets the draft first (``first_answer="draft"``, the default) and, on a revision request
(`revision`), the reference once the message names every violation of the draft, else the draft again; with
``first_answer="reference"`` (or no draft) it gets the reference. Any other photo gets a polite unfit answer. When
the request asks for a 体裁/词牌 (`forms`) the recorded poem is not, the answer says so: a fixed note
(`poemlib.samples.replay_mismatch_note`) opens its poem_explanation.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poemlib.offline.gemini.forms import fits, prepare, recorded_form, requested_form
from poemlib.offline.gemini.matching import (
    DEFAULT_MATCH_THRESHOLD,
    ImageIndex,
    image_size,
)
from poemlib.offline.gemini.revision import (
    RevisionVerdict,
    draft_report,
    first_user_text,
    judge_revision,
    revision_message,
)
from poemlib.offline.gemini.wire import (
    BAD_IMAGE_MESSAGE,
    ApiError,
    Conversation,
    bad_request,
)
from poemlib.schema import Annotation

if TYPE_CHECKING:
    from poemlib.meter import MeterReport

log = logging.getLogger(__name__)

FIRST_ANSWERS = ("draft", "reference")

UNKNOWN_IMAGE_ANNOTATION = Annotation(
    create_condition=False,
    poem_type=None,
    poem_title=None,
    poem_content="抱歉，无法为这张图片作诗：回放服务器没有这张图片的参考标注，它与任何一张样本照片都对不上。",
    poem_explanation="离线回放模式只对样本照片返回事先记录的标注；其他图片一律礼貌地判为不宜作诗（create_condition=false）。",
)


def default_references() -> dict[str, Annotation]:
    """`poemlib.samples.reference_annotations()`, or {} (with a warning) while the sample data is unreadable."""
    from poemlib.samples import reference_annotations

    try:
        return dict(reference_annotations())
    except (OSError, ValueError) as exc:
        log.warning("gemini server: cannot load sample reference annotations (%s); replaying no references", exc)
        return {}


def default_drafts() -> dict[str, Annotation]:
    """`poemlib.samples.draft_annotations()`, or {} (with a warning) while the sample drafts are unreadable."""
    from poemlib.samples import draft_annotations

    try:
        return dict(draft_annotations())
    except (OSError, ValueError) as exc:
        log.warning("gemini server: cannot load sample drafts (%s); first answers are the references", exc)
        return {}


def default_reference_images() -> list[Path]:
    """The sample photos (`poemlib.samples.sample_images()`), none when the sample folder is missing."""
    from poemlib.config import SAMPLE_DIR
    from poemlib.samples import sample_images

    return sample_images() if SAMPLE_DIR.is_dir() else []


@dataclass(frozen=True)
class Identity:
    """Who a request's first image is: `identity` (the matched reference's sha256, else `raw`), `raw` (sha256 of
    the received bytes) and the display size of every image (for token counts)."""

    identity: str | None
    raw: str | None
    sizes: tuple[tuple[int, int] | None, ...]

    @property
    def digests(self) -> list[str]:
        """The digests a per-image fault rule may be keyed by, identity first."""
        return [d for d in (self.identity, self.raw) if d]


@dataclass(frozen=True)
class ReplayChoice:
    """The annotation a model call answers with, the outcome counted for it ('ok' or 'unfit'), which recording it is
    ('draft', 'reference' or 'unknown'), the log entry of a revision request and the mismatch note, if any."""

    annotation: Annotation
    outcome: str
    answer: str = "reference"
    revision: dict[str, Any] | None = None
    mismatch: str | None = None


def _as_annotations(values: Mapping[str, Annotation | Mapping[str, Any]]) -> dict[str, Annotation]:
    return {digest: v if isinstance(v, Annotation) else Annotation.model_validate(v) for digest, v in values.items()}


def _with_mismatch_note(annotation: Annotation, conversation: Conversation) -> tuple[Annotation, str | None]:
    """The annotation with the mismatch note opening its explanation when the request asked for another form."""
    from poemlib.samples import replay_mismatch_note

    requested = requested_form(first_user_text(conversation))
    recorded = recorded_form(annotation) if requested else None
    if requested is None or recorded is None or fits(requested, recorded):
        return annotation, None
    note = replay_mismatch_note(requested.label(), recorded.label())
    return annotation.model_copy(update={"poem_explanation": note + annotation.poem_explanation}), note


class Replay:
    """Recorded annotations by image sha256 and the index of photos received images are matched to."""

    def __init__(
        self,
        references: Mapping[str, Annotation | Mapping[str, Any]] | None = None,
        reference_images: Iterable[str | os.PathLike[str] | bytes] | None = None,
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
        *,
        drafts: Mapping[str, Annotation | Mapping[str, Any]] | None = None,
        first_answer: str = "draft",
    ) -> None:
        """drafts: image sha256 → flawed draft (default: the sample drafts when `references` is default too, else none)."""
        if first_answer not in FIRST_ANSWERS:
            raise ValueError(f"first_answer must be one of {', '.join(FIRST_ANSWERS)}, got {first_answer!r}")
        self.references = _as_annotations(default_references() if references is None else references)
        if drafts is None:
            drafts = default_drafts() if references is None else {}
        self.drafts = _as_annotations(drafts)
        self.first_answer = first_answer
        # The 格律 engine and the 词牌 table load here, not inside a (possibly timed) first request.
        self._reports: dict[str, MeterReport] = {digest: draft_report(draft) for digest, draft in self.drafts.items()}
        prepare(with_cipai=bool(self.drafts) or any(a.poem_type == "词" for a in self.references.values()))
        images = default_reference_images() if reference_images is None else list(reference_images)
        self.images = ImageIndex(images, threshold=match_threshold)

    def identify(self, images: Sequence[bytes]) -> Identity:
        """The identity of the first image; raises ApiError (400) when it cannot be decoded."""
        sizes = tuple(image_size(data) for data in images)
        if not images:
            return Identity(None, None, sizes)
        first = images[0]
        raw = hashlib.sha256(first).hexdigest()
        if sizes[0] is None:
            raise ApiError(bad_request(BAD_IMAGE_MESSAGE, "bad_image"))
        matched, how, _distance = self.images.match(first, raw, extra_digests=self.references.keys())
        if how == "bad_image":
            raise ApiError(bad_request(BAD_IMAGE_MESSAGE, "bad_image"))
        return Identity(matched or raw, raw, sizes)

    def draft_report(self, identity: str) -> MeterReport:
        """The meter report of the draft recorded for this identity."""
        return self._reports[identity]

    def choose(self, identity: str | None, conversation: Conversation) -> ReplayChoice:
        """What this call answers: draft or reference of a known photo (see the module doc), else the unfit answer."""
        reference = self.references.get(identity) if identity else None
        if identity is None or reference is None:
            return ReplayChoice(UNKNOWN_IMAGE_ANNOTATION, "unfit", "unknown")
        if not reference.create_condition:
            return ReplayChoice(reference, "unfit")
        use_draft = self.first_answer == "draft" and identity in self.drafts
        message = revision_message(conversation)
        revision: dict[str, Any] | None = None
        answer = "draft" if use_draft else "reference"
        if message is not None:
            verdict = judge_revision(message, self.draft_report(identity)) if use_draft else RevisionVerdict(message, (), ())
            answer = "reference" if verdict.all_named else "draft"
            revision = verdict.log_entry(identity, conversation.model_turns, answer)
        chosen = self.drafts[identity] if answer == "draft" else reference
        chosen, note = _with_mismatch_note(chosen, conversation)
        return ReplayChoice(chosen, "ok", answer, revision, note)
