"""Qwen2.5-VL as LLaMA-Factory trains it, the one rule for training and inference alike: the `qwen2_vl` prompt
(system turn, one image, the instruction, the assistant's opener) and the photo resized to the training pixel budget
(configs/vision.yaml) with LLaMA-Factory's own rule. Pure text and Pillow: no heavy imports.
"""

from __future__ import annotations

import math
import os

from PIL import Image

from poemlib.images import MAX_SOURCE_PIXELS, prepare_image
from poemlib.instructions import SYSTEM_PROMPT, render_instruction
from poemlib.schema import PoemRequest

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


IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"


def render_qwen_prompt(instruction: str, *, system: str = SYSTEM_PROMPT, n_image_tokens: int | None = None) -> str:
    """The qwen2_vl template's text for one image + instruction, ending with the assistant turn opener.

    With n_image_tokens the image placeholder is expanded as LLaMA-Factory's Qwen2VLPlugin does (one
    <|image_pad|> per merged patch); without, one <|image_pad|> is left for the processor to expand.
    """
    pads = IMAGE_PAD * (n_image_tokens if n_image_tokens is not None else 1)
    user = f"{VISION_START}{pads}{VISION_END}{instruction}"
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def qwen_prompt_for(request: PoemRequest, *, n_image_tokens: int | None = None) -> str:
    """The prompt sent for a request: the instruction pool's deterministic rendering inside the qwen2_vl template."""
    return render_qwen_prompt(render_instruction(request), n_image_tokens=n_image_tokens)
