"""Image identity and preparation shared by annotation, training, inference and the demo."""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".avif"})
# Formats a vision model can be sent after conversion to RGB; anything else is refused by name.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
# Pillow refuses images above ~179 MP as decompression bombs; our own ceiling is explicit and lower.
MAX_SOURCE_PIXELS = 120_000_000


class BadImageError(ValueError):
    """An image file cannot be used; the message names the file and the reason."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes: an image's identity, whatever its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """sha256 hex digest of in-memory bytes."""
    return hashlib.sha256(data).hexdigest()


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Image-like files under root, recursively, in a stable order (by suffix; content is checked later)."""
    root = Path(root)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            yield path


def relative_posix(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """Path relative to root with forward slashes (falls back to the name when outside root)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def fit_pixel_budget(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio whose area is at most max_pixels (never upscales)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def open_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Image.Image:
    """Open an image fully decoded, raising BadImageError with a specific reason."""
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.exists():
            raise BadImageError(f"{label}: file not found")
        if path.stat().st_size == 0:
            raise BadImageError(f"{label}: empty file (0 bytes)")
        source = path.read_bytes()
    elif not source:
        raise BadImageError(f"{label}: empty upload (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source))
            if image.format not in SUPPORTED_FORMATS:
                raise BadImageError(f"{label}: unsupported image format {image.format}")
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise BadImageError(f"{label}: {image.width}×{image.height} exceeds the {MAX_SOURCE_PIXELS:,}-pixel limit")
            image.load()
    except BadImageError:
        raise
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{label}: not an image (Pillow cannot identify the format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"{label}: image too large ({exc})") from exc
    except OSError as exc:
        raise BadImageError(f"{label}: truncated or corrupt image data ({exc})") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalise colour mode to RGB: alpha composited on white, CMYK/P/L/I converted, first frame of animations."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB") if image.mode != "RGB" else image


def prepare_image(source: str | os.PathLike[str] | bytes | Image.Image, max_pixels: int, *, name: str | None = None) -> Image.Image:
    """Open, EXIF-transpose, convert to RGB and downscale to a pixel budget: the one way every stage sees a photo."""
    image = source if isinstance(source, Image.Image) else open_image(source, name=name)
    image = ImageOps.exif_transpose(image) or image
    image = to_rgb(image)
    size = fit_pixel_budget(image.width, image.height, max_pixels)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (what is sent inline to an API)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def thumbnail_jpeg(
    source: str | os.PathLike[str] | bytes | Image.Image, max_side: int = 320, *, crop: tuple[int, int] | None = None, quality: int = 80
) -> bytes:
    """The one thumbnail: EXIF-rotated RGB, fitted inside max_side (or centre-cropped to `crop`), as JPEG bytes."""
    image = prepare_image(source, max(max_side, *(crop or (0,))) ** 2 * 4)
    if crop is not None:
        image = ImageOps.fit(image, crop, Image.Resampling.LANCZOS)
    else:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return encode_jpeg(image, quality)


def jpeg_data_uri(jpeg: bytes) -> str:
    """JPEG bytes as a data: URI for HTML pages and widgets."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
