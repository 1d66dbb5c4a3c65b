"""The studio's photos: sample lookup, uploads checked and prepared once, gallery thumbnails and previews."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image

from poemlib.config import vision_budget
from poemlib.images import BadImageError, jpeg_data_uri, prepare_image, thumbnail_jpeg

log = logging.getLogger(__name__)

PREVIEW_QUALITY = 85


class UploadError(ValueError):
    """An upload the studio cannot use; str() is the message shown to the user."""


def slug(name: str) -> str:
    """A CSS-class-safe name for a sample photo ('cat_chelsea.jpg' → 'cat-chelsea')."""
    return re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-") or "photo"


def pixel_budget(pixels: str, profile: str) -> int:
    """image_max_pixels of a configs/vision.yaml profile; "auto" is the backends profile's own `pixels`."""
    if pixels == "auto":
        try:
            from poemlib.backends import profile_config

            pixels = str(profile_config(profile).get("pixels", "tiny"))
        except Exception:  # noqa: BLE001 - an unknown profile falls back to the tiny budget
            pixels = "tiny"
    return int(vision_budget(pixels)["image_max_pixels"])


def find_samples(samples: Sequence[str | os.PathLike[str]] | None = None) -> list[Path]:
    """The given sample photos, or the bundled ones (none when they cannot be listed: uploads still work)."""
    if samples is None:
        try:
            from poemlib.samples import sample_images

            samples = sample_images()
        except Exception:  # noqa: BLE001 - the studio works with uploads alone
            log.warning("demo: no sample photos found")
            samples = []
    return [Path(p) for p in samples]


def resolve_sample(samples: Sequence[Path], sample: str | os.PathLike[str] | int) -> Path:
    """A sample photo by index, file name, stem or path (an existing file outside the samples is taken as is)."""
    if isinstance(sample, int):
        return samples[sample]
    candidate = Path(sample)
    for path in samples:
        if path.name == candidate.name or path.stem == str(sample):
            return path
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"no sample photo {sample!r}; known: {[p.name for p in samples]}")


def prepare_upload(data: bytes, name: str, *, max_bytes: int, max_pixels: int, max_mb: float) -> Image.Image:
    """An uploaded file as a prepared photo; UploadError (the user's message) when too large or not a usable image."""
    if len(data) > max_bytes:
        raise UploadError(f"上传失败 upload refused: {name} is {len(data) / 1048576:.1f} MB, over the {max_mb:g} MB limit")
    try:
        return prepare_image(data, max_pixels, name=name)
    except BadImageError as exc:
        raise UploadError(f"图片无法使用 bad upload: {exc}") from exc
    except MemoryError as exc:
        raise UploadError(f"图片无法使用 bad upload: {name}: not enough memory to decode it") from exc
    except Exception as exc:  # Pillow's rarer decoder errors
        raise UploadError(f"图片无法使用 bad upload: {name}: cannot be decoded ({type(exc).__name__}: {exc})") from exc


def preview_jpeg(image: Image.Image, max_px: int) -> bytes:
    """The preview of a prepared photo (JPEG bytes, longest side max_px)."""
    return thumbnail_jpeg(image, max_px, quality=PREVIEW_QUALITY)


@lru_cache(maxsize=64)
def _gallery_thumbnail(path: str, mtime_ns: int, width: int, height: int) -> bytes | None:
    """A centre-cropped thumbnail of a sample photo, cached per file version (None when it cannot be read)."""
    try:
        # 1.5× the button size, so the thumbnail stays sharp on high-density screens
        return thumbnail_jpeg(path, crop=(int(width * 1.5), int(height * 1.5)))
    except Exception:  # noqa: BLE001 - a broken sample only loses its thumbnail
        log.warning("demo: cannot thumbnail %s", path)
        return None


def gallery_css(samples: Sequence[Path], thumb_size: tuple[int, int]) -> str:
    """Background-image rules for the gallery buttons (thumbnails as data URIs), one per readable sample."""
    width, height = thumb_size
    rules = []
    for path in samples:
        try:
            data = _gallery_thumbnail(str(path), path.stat().st_mtime_ns, width, height)
        except OSError:
            data = None
        if data:
            rules.append(f".poem-studio .sample-{slug(path.name)} {{ background-image: url({jpeg_data_uri(data)}); }}")
    return "\n".join(rules)
