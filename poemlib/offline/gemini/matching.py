"""Which known photo a received image is: exact sha256, else the nearest 16×16 grey thumbnail under a threshold.

Clients downscale and re-encode photos before sending them, so the bytes rarely match; the thumbnail (EXIF-transposed)
of a re-encoded photo stays within a few grey levels of the original's.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import threading
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

THUMB_SIZE = 16
DEFAULT_MATCH_THRESHOLD = 12.0  # RMS grey-level distance of 16×16 thumbnails (0-255 scale)
_MAX_LOG_ASPECT = 0.05  # aspect ratios must agree within ~5 %

ImageSource = str | os.PathLike[str] | bytes


def _thumbnail(data: bytes) -> tuple[Any, float]:
    """(16×16 grey thumbnail as float32 array, aspect ratio after EXIF transpose); raises on bad data."""
    import numpy as np
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image.draft("RGB", (THUMB_SIZE * 4, THUMB_SIZE * 4))  # JPEG DCT scaling: fast decode of big photos
        except (AttributeError, ValueError, OSError):
            pass
        image = ImageOps.exif_transpose(image) or image
        grey = image.convert("L").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32), image.width / image.height


def image_size(data: bytes) -> tuple[int, int] | None:
    """Display size (EXIF orientation applied) from the header only; None when not an image."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001 - broken EXIF must not break sizing
            orientation = 1
    except Exception:  # noqa: BLE001 - any failure means "not an image"
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@dataclass
class _RefImage:
    digest: str
    thumb: Any
    aspect: float


_THUMB_CACHE: dict[tuple[str, int, int], _RefImage] = {}
_THUMB_CACHE_LOCK = threading.Lock()


def _reference_from_bytes(data: bytes) -> _RefImage | None:
    try:
        thumb, aspect = _thumbnail(data)
    except Exception:  # noqa: BLE001 - a broken reference can only be matched exactly
        return None
    return _RefImage(hashlib.sha256(data).hexdigest(), thumb, aspect)


def _reference_image(source: ImageSource) -> _RefImage | None:
    """Digest and thumbnail of a reference photo (files cached by path, size and mtime)."""
    if isinstance(source, bytes):
        return _reference_from_bytes(source)
    path = Path(source)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _THUMB_CACHE_LOCK:
        cached = _THUMB_CACHE.get(key)
    if cached is not None:
        return cached
    ref = _reference_from_bytes(path.read_bytes())
    if ref is None:
        log.warning("gemini server: cannot thumbnail reference image %s", path)
        return None
    with _THUMB_CACHE_LOCK:
        _THUMB_CACHE[key] = ref
    return ref


class ImageIndex:
    """Known photos: exact sha256 lookup, then nearest 16×16 thumbnail under a threshold."""

    def __init__(self, sources: Iterable[ImageSource], threshold: float = DEFAULT_MATCH_THRESHOLD) -> None:
        self._sources = list(sources)
        self.threshold = threshold
        self._refs: list[_RefImage] | None = None
        self._digests: set[str] = set()
        self._lock = threading.Lock()

    def _ensure(self) -> list[_RefImage]:
        """Thumbnail the reference photos on first use (cheap, cached across servers)."""
        with self._lock:
            if self._refs is None:
                refs = [r for r in (_reference_image(s) for s in self._sources) if r is not None]
                self._digests = {r.digest for r in refs}
                self._refs = refs
            return self._refs

    def __len__(self) -> int:
        return len(self._ensure())

    def digests(self) -> set[str]:
        """sha256 of every indexed photo."""
        self._ensure()
        return set(self._digests)

    def match(self, data: bytes, digest: str | None = None, extra_digests: Collection[str] = ()) -> tuple[str | None, str, float | None]:
        """(matched reference digest or None, how: 'exact' | 'perceptual' | 'none' | 'bad_image', distance)."""
        import numpy as np

        refs = self._ensure()
        digest = digest or hashlib.sha256(data).hexdigest()
        if digest in self._digests or digest in extra_digests:
            return digest, "exact", 0.0
        try:
            thumb, aspect = _thumbnail(data)
        except Exception:  # noqa: BLE001
            return None, "bad_image", None
        best: tuple[float, str] | None = None
        for ref in refs:
            if abs(math.log(aspect / ref.aspect)) > _MAX_LOG_ASPECT:
                continue
            dist = float(np.sqrt(np.mean((thumb - ref.thumb) ** 2)))
            if best is None or dist < best[0]:
                best = (dist, ref.digest)
        if best is not None and best[0] <= self.threshold:
            return best[1], "perceptual", best[0]
        return None, "none", best[0] if best else None
