"""Answers from the sample references: which photo a request shows, and which recorded annotation it gets.

`Replay.choose` is the one place that decides what a model call answers, from the photo's identity and the whole
conversation (earlier model turns and the user's text included): today the recorded reference annotation of a known
photo, a polite unfit answer for any other. A policy that answers a first request differently from a follow-up
(e.g. a draft first, the reference once a revision request names what is wrong) belongs there.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poemlib.offline.gemini.matching import (
    DEFAULT_MATCH_THRESHOLD,
    ImageIndex,
    image_size,
)
from poemlib.offline.gemini.wire import (
    BAD_IMAGE_MESSAGE,
    ApiError,
    Conversation,
    bad_request,
)
from poemlib.schema import Annotation

log = logging.getLogger(__name__)

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
    """The annotation a model call answers with and the outcome counted for it ('ok' or 'unfit')."""

    annotation: Annotation
    outcome: str


class Replay:
    """Recorded annotations by image sha256 and the index of photos received images are matched to."""

    def __init__(
        self,
        references: Mapping[str, Annotation | Mapping[str, Any]] | None = None,
        reference_images: Iterable[str | os.PathLike[str] | bytes] | None = None,
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    ) -> None:
        refs = default_references() if references is None else references
        self.references: dict[str, Annotation] = {
            digest: value if isinstance(value, Annotation) else Annotation.model_validate(value) for digest, value in refs.items()
        }
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

    def choose(self, identity: str | None, conversation: Conversation) -> ReplayChoice:
        """What this call answers: the photo's recorded annotation, else the unfit answer (conversation unused yet)."""
        annotation = self.references.get(identity) if identity else None
        if annotation is None:
            return ReplayChoice(UNKNOWN_IMAGE_ANNOTATION, "unfit")
        return ReplayChoice(annotation, "ok" if annotation.create_condition else "unfit")
