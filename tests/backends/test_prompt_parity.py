"""The Qwen backends send what LLaMA-Factory trained on: same prompt tokens, same pixels, same image token count."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from poemlib import backends as bk
from poemlib.config import SAMPLE_DIR
from poemlib.images import MAX_SOURCE_PIXELS, prepare_image
from poemlib.instructions import IMAGE_PLACEHOLDER, render_instruction
from poemlib.schema import PoemRequest
from tests.fixtures import MIXED_ASPECT_PHOTOS

REQUESTS = [
    PoemRequest(),
    PoemRequest(poem_type="七言绝句"),
    PoemRequest(poem_type="词", cipai="浣溪沙", mood="思乡", extra_instruction="写出秋夜的凉意"),
    PoemRequest(mood="闲适"),
]
PHOTOS = list(MIXED_ASPECT_PHOTOS)


@pytest.fixture(scope="module")
def llamafactory_side(tiny_qwen_dir: Path):
    """LLaMA-Factory's qwen2_vl template and a processor patched the way its loader patches it for training."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoProcessor, AutoTokenizer

    from poemlib.config import vision_budget

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen_dir))
    processor = AutoProcessor.from_pretrained(str(tiny_qwen_dir))
    processor.tokenizer = tokenizer  # llamafactory.model.patcher.patch_processor
    budget = vision_budget("tiny")
    processor.image_max_pixels = budget["image_max_pixels"]
    processor.image_min_pixels = budget["image_min_pixels"]
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen2_vl"))
    return template, tokenizer, processor


def _llamafactory_prompt(template, tokenizer, processor, image, instruction: str):
    """What LLaMA-Factory's supervised processor builds for a sharegpt row "<image>"+instruction (prompt part)."""
    messages = [{"role": "user", "content": IMAGE_PLACEHOLDER + instruction}, {"role": "assistant", "content": ""}]
    messages = template.mm_plugin.process_messages(messages, [image], [], [], processor)
    prompt_ids, _ = template.encode_oneturn(tokenizer, messages, system=None, tools=None)
    text = "".join(template.format_system.apply(content=template.default_system))
    text += "".join(template.format_user.apply(content=messages[0]["content"]))
    mm = template.mm_plugin._get_mm_inputs([image], [], [], processor)
    return prompt_ids, text, mm


@pytest.mark.parametrize("request_index", range(len(REQUESTS)))
def test_prompt_ids_text_and_pixels_equal_llamafactory(tiny_qwen_dir, llamafactory_side, request_index) -> None:
    import torch

    template, tokenizer, processor = llamafactory_side
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu")
    backend = bk.QwenBackend("base", "base", engine, use_adapter=False)
    request = REQUESTS[request_index]
    photo = SAMPLE_DIR / PHOTOS[request_index % len(PHOTOS)]
    lf_ids, lf_text, lf_mm = _llamafactory_prompt(template, tokenizer, processor, str(photo), render_instruction(request))

    ours = engine.encode([engine.prepare(photo)], request)
    assert ours["input_ids"][0].tolist() == lf_ids
    assert backend.prompt(request, photo) == lf_text
    assert torch.equal(ours["image_grid_thw"], lf_mm["image_grid_thw"])
    assert torch.equal(ours["pixel_values"], lf_mm["pixel_values"])  # same resize, same filter: same pixels


def test_exif_photo_matches_the_normalised_training_copy(tiny_qwen_dir, llamafactory_side, tmp_path) -> None:
    """transform stores an EXIF-rotated photo as the normalised PNG; inference from the original JPEG sees the same."""
    import torch

    template, tokenizer, processor = llamafactory_side
    source = SAMPLE_DIR / "summer_palace_pagoda_exif6.jpg"
    stored = tmp_path / "stored.png"
    prepare_image(source, MAX_SOURCE_PIXELS).save(stored)
    lf_ids, _, lf_mm = _llamafactory_prompt(template, tokenizer, processor, str(stored), render_instruction(PoemRequest()))
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu")
    ours = engine.encode([engine.prepare(source)], PoemRequest())
    assert ours["input_ids"][0].tolist() == lf_ids
    assert torch.equal(ours["pixel_values"], lf_mm["pixel_values"])


def test_image_budget_and_token_count(tiny_qwen_dir) -> None:
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu")
    big = Image.new("RGB", (4032, 3024), (90, 120, 150))
    prepared = engine.prepare(big)
    assert prepared.width * prepared.height <= engine.budget["image_max_pixels"]
    assert prepared.width / prepared.height == pytest.approx(4032 / 3024, rel=0.01)  # aspect kept
    assert engine.n_image_tokens(prepared) <= engine.budget["image_max_pixels"] // 784 + 8
    tiny = Image.new("RGB", (10, 10))
    assert min(engine.prepare(tiny).size) >= 28


def test_preprocess_rule_without_a_model() -> None:
    """prepare_for_qwen is the engine's rule with no model loaded: budget kept, minimum side, aspect ratio capped."""
    budget = {"image_max_pixels": 50176, "image_min_pixels": 3136}
    photo = Image.new("RGB", (4032, 3024), (90, 120, 150))
    assert bk.prepare_for_qwen(photo, budget).size == (258, 193)  # int(4032·f), int(3024·f), f = √(50176/(4032·3024))
    grey = bk.regularize_for_qwen(Image.new("L", (3000, 10)), 10**9, 0)
    assert grey.size == (3000, 28) and grey.mode == "RGB"  # at least 28 px a side, RGB
    assert bk.regularize_for_qwen(Image.new("RGB", (6000, 28)), 10**9, 0).size == (28 * 180, 28)  # aspect > 200 cut


def test_render_prompt_shape() -> None:
    text = bk.render_qwen_prompt("作诗", n_image_tokens=3)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>作诗<|im_end|>\n<|im_start|>assistant\n"
    )
    request = PoemRequest(poem_type="七言绝句")
    assert bk.qwen_prompt_for(request) == bk.render_qwen_prompt(render_instruction(request))


def test_cpu_device_and_dtype_auto() -> None:
    import torch

    device, dtype = bk.select_device_dtype("cpu", "auto")
    assert device.type == "cpu" and dtype == torch.float32
    assert bk.select_device_dtype("cpu", "bf16")[1] == torch.bfloat16
    if not torch.cuda.is_available():
        assert bk.select_device_dtype() == (torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        bk.select_device_dtype("cpu", "fp8")
