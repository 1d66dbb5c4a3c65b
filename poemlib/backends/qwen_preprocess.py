"""The ONE rule that turns a photo into the pixels Qwen2.5-VL saw in training.

Normalised as poemlib.transform stores it (EXIF rotation, RGB, full size), then resized by LLaMA-Factory's own rule
to the training pixel budget of configs/vision.yaml: same size, same filter, same pixels.
"""

from __future__ import annotations

import math
import os

from PIL import Image

from poemlib.images import MAX_SOURCE_PIXELS, prepare_image

# LLaMA-Factory's limits after the budget: at least this many pixels a side, and an aspect ratio of at most 200:1
# (a longer side is cut to 180× the shorter one).
MIN_SIDE = 28
MAX_ASPECT = 200
ASPECT_CUT = 180


def regularize_for_qwen(image: Image.Image, max_pixels: int, min_pixels: int) -> Image.Image:
    """LLaMA-Factory's image preprocessing at training time (mm_plugin `_preprocess_image` of BasePlugin and
    Qwen2VLPlugin), step for step: downscale above max_pixels and upscale below min_pixels with PIL's default
    filter and int() sizes, then at least 28 px a side and an aspect ratio of at most 200."""
    if image.width * image.height > max_pixels:
        factor = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    if image.width * image.height < min_pixels:
        factor = math.sqrt(min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if min(image.width, image.height) < MIN_SIDE:
        image = image.resize((max(image.width, MIN_SIDE), max(image.height, MIN_SIDE)))
    if image.width / image.height > MAX_ASPECT:
        image = image.resize((image.height * ASPECT_CUT, image.height))
    if image.height / image.width > MAX_ASPECT:
        image = image.resize((image.width, image.width * ASPECT_CUT))
    return image


def prepare_for_qwen(source: str | os.PathLike | bytes | Image.Image, budget: dict[str, int], *, name: str | None = None) -> Image.Image:
    """A photo (path, bytes or PIL image) as training saw it under a vision budget
    ({"image_max_pixels", "image_min_pixels"}, poemlib.config.vision_budget); BadImageError for unreadable input."""
    image = prepare_image(source, MAX_SOURCE_PIXELS, name=name)
    return regularize_for_qwen(image, budget["image_max_pixels"], budget["image_min_pixels"])
