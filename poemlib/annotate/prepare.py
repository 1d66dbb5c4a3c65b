"""Photos as Gemini receives them: EXIF-transposed RGB JPEG within the pixel budget."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from poemlib.annotate.config import AnnotateConfigSource, load_annotate_config
from poemlib.images import BadImageError, encode_jpeg, prepare_image

_HEIF_SUFFIXES = {".heic", ".heif", ".avif"}


def prepare_for_gemini(path: str | os.PathLike[str], config: AnnotateConfigSource = None, *, name: str | None = None) -> bytes:
    """JPEG bytes sent to Gemini: EXIF-transposed, RGB, downscaled to the pixel budget. Raises BadImageError."""
    cfg = load_annotate_config(config)
    path = Path(path)
    label = name or path.name
    try:
        image = prepare_image(path, cfg.image_max_pixels, name=label)
        return encode_jpeg(image, cfg.jpeg_quality)
    except BadImageError as exc:
        if path.suffix.lower() in _HEIF_SUFFIXES and "cannot identify" in str(exc):
            raise BadImageError(f"{label}: {path.suffix.lower()[1:].upper()} is not a supported format here (convert to JPEG, or install pillow-heif)") from exc
        raise
    except MemoryError as exc:
        raise BadImageError(f"{label}: not enough memory to decode this image") from exc
    except (ValueError, SyntaxError, TypeError, IndexError, OSError) as exc:  # Pillow's less common decoder errors
        raise BadImageError(f"{label}: cannot be decoded ({type(exc).__name__}: {exc})") from exc


def image_to_jpeg(source: Any, config: AnnotateConfigSource = None, *, name: str | None = None) -> bytes:
    """`prepare_for_gemini` for a path, bytes or an opened PIL image. Raises BadImageError."""
    cfg = load_annotate_config(config)
    if isinstance(source, (str, os.PathLike)):
        return prepare_for_gemini(source, cfg, name=name)
    from PIL import Image

    if not isinstance(source, (bytes, Image.Image)):
        raise BadImageError(f"{name or 'image'}: unsupported input type {type(source).__name__}")
    return encode_jpeg(prepare_image(source, cfg.image_max_pixels, name=name), cfg.jpeg_quality)
