"""The LogitsProcessor inside a real generate() of the tiny Qwen2.5-VL: greedy and sampled, batched, with a LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poemlib.constrain import build_logits_processor
from poemlib.schema import PoemRequest
from tests.constrain.helpers import assert_passes

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tiny_qwen_dir: Path):
    """Tokenizer (left padding) and model of the session's tiny Qwen2.5-VL."""
    processor = transformers.AutoProcessor.from_pretrained(str(tiny_qwen_dir))
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir)).eval()
    return processor, tokenizer, model


def _generate(tiny, request: PoemRequest, *, sample: bool, model=None) -> list[str]:
    """Constrained answers for two prompts of different lengths (so left padding is exercised)."""
    processor, tokenizer, base = tiny
    model = model or base
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in ("写一首诗。", "请为这张照片写一首中国古典诗词，并给出赏析，以JSON格式回答。")
    ]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    constraint = build_logits_processor(tokenizer, request, logits_size=base.get_output_embeddings().weight.shape[0])
    torch.manual_seed(request.seed or 0)
    options = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=request.max_new_tokens, logits_processor=transformers.LogitsProcessorList([constraint]),
            pad_token_id=tokenizer.pad_token_id, eos_token_id=list(constraint.engine.table.vocab.stop_ids), **options,
        )
    new = out[:, inputs["input_ids"].shape[1]:].tolist()
    texts = []
    for row in new:
        stop = next(i for i, tok in enumerate(row) if tok in constraint.engine.table.vocab.stop_ids)  # always finishes
        assert constraint.finished(row[: stop + 1])
        texts.append(tokenizer.decode(row[:stop], skip_special_tokens=True))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("poem_type", ["五言绝句", "七言律诗"])
def test_generate_greedy_and_sampled_answers_pass(tiny, poem_type: str) -> None:
    for sample, seed in ((False, None), (True, 1), (True, 2)):
        request = PoemRequest(poem_type=poem_type, max_new_tokens=260, seed=seed)
        for text in _generate(tiny, request, sample=sample):
            annotation = assert_passes(text, poem_type)
            # a random model may call the photo unfit: that answer stays possible and must parse too
            assert annotation.create_condition is False or annotation.poem_type == poem_type


@pytest.mark.slow
def test_generate_a_ci_greedy_and_sampled(tiny) -> None:
    for sample, seed in ((False, None), (True, 1)):
        request = PoemRequest(poem_type="词", cipai="菩萨蛮", max_new_tokens=200, seed=seed)
        for text in _generate(tiny, request, sample=sample):
            annotation = assert_passes(text, "词")
            assert annotation.create_condition is False or annotation.poem_title.startswith("菩萨蛮·")


@pytest.mark.slow
def test_generate_with_a_lora_adapter_passes(tiny) -> None:
    from peft import LoraConfig, get_peft_model

    _, _, model = tiny
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=r"model\.language_model\..*\.(q_proj|v_proj)")
    peft_model = get_peft_model(model, config).eval()
    try:
        # no type requested: 近体 or a common 词牌 (up to 沁园春) or unfit, so the budget covers the longest head
        for text in _generate(tiny, PoemRequest(max_new_tokens=345, seed=3), sample=True, model=peft_model):
            assert_passes(text, None)
    finally:
        peft_model.unload()
