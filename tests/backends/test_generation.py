"""Qwen generation: batching changes nothing, seeded sampling repeats, a bad photo fails alone, answers are classified."""

from __future__ import annotations

import io

from PIL import Image

from poemlib import backends as bk
from poemlib.config import SAMPLE_DIR
from poemlib.schema import PoemRequest
from tests.fixtures import MIXED_ASPECT_PHOTOS

PHOTOS = list(MIXED_ASPECT_PHOTOS)


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_qwen_dir) -> None:
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu", max_new_tokens_cap=20)
    assert engine.tokenizer.padding_side == "left"
    photos = [SAMPLE_DIR / p for p in PHOTOS]  # different aspect ratios: different image token counts → padding
    request = PoemRequest(max_new_tokens=20)
    inputs = engine.encode([engine.prepare(p) for p in photos], request)
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) > 1, "the fixture photos should need padding"
    assert (inputs["attention_mask"][:, -1] == 1).all(), "padding must be on the left"

    batched = engine.generate(photos, request, use_adapter=False, backend="base")
    single = [engine.generate([p], request, use_adapter=False, backend="base")[0] for p in photos]
    assert [r.raw_text for r in batched] == [r.raw_text for r in single]
    assert [r.usage.prompt_tokens for r in batched] == lengths
    assert all(1 <= r.usage.output_tokens <= 20 for r in batched)
    assert all(r.latency_s > 0 for r in batched)


def test_generation_kwargs_follow_the_request_and_pass_a_logits_processor(tiny_qwen_dir) -> None:
    """Greedy at temperature 0, sampling with the configured top_p/top_k above; the cap wins; processors pass through."""
    from transformers import LogitsProcessor

    class Ban(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu", max_new_tokens_cap=20, generation={"top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1})
    greedy = engine.generation_kwargs(PoemRequest(max_new_tokens=300))
    assert greedy["do_sample"] is False and greedy["max_new_tokens"] == 20 and greedy["repetition_penalty"] == 1.1
    assert "logits_processor" not in greedy
    ban = Ban()
    sampled = engine.generation_kwargs(PoemRequest(temperature=0.7), [ban])
    assert (sampled["do_sample"], sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (True, 0.7, 0.9, 50)
    assert list(sampled["logits_processor"]) == [ban]


def test_seeded_sampling_is_reproducible(tiny_qwen_dir) -> None:
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu", max_new_tokens_cap=16)
    photo = SAMPLE_DIR / PHOTOS[0]
    a = engine.generate([photo], PoemRequest(temperature=1.0, seed=7), use_adapter=False, backend="base")[0]
    b = engine.generate([photo], PoemRequest(temperature=1.0, seed=7), use_adapter=False, backend="base")[0]
    c = engine.generate([photo], PoemRequest(temperature=1.0, seed=8), use_adapter=False, backend="base")[0]
    assert a.raw_text == b.raw_text
    assert a.raw_text != c.raw_text


def test_bad_image_in_a_batch_only_fails_that_image(tiny_qwen_dir, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    engine = bk.QwenEngine(tiny_qwen_dir, device="cpu", max_new_tokens_cap=8)
    photo_bytes = (SAMPLE_DIR / PHOTOS[0]).read_bytes()
    pil = Image.open(io.BytesIO(photo_bytes))
    results = engine.generate([photo_bytes, broken, pil], PoemRequest(), use_adapter=False, backend="base")
    assert [r.error_kind for r in results][1] == "bad_image"
    assert "broken.jpg" in results[1].error_message  # the message names the file
    assert results[0].error_kind != "bad_image" and results[2].error_kind != "bad_image"
    assert results[0].raw_text == results[2].raw_text  # bytes and an opened PIL image are the same photo


def test_result_from_text_classifies_answers() -> None:
    good = '{"poem_type": "五言绝句", "poem_title": "猫", "poem_content": "a\\nb", "poem_explanation": "e"}'
    assert bk.result_from_text("x", good).ok
    assert bk.result_from_text("x", good).annotation.poem_title == "猫"
    assert bk.result_from_text("x", f"```json\n{good}\n```").ok
    unfit = '{"create_condition": false, "poem_content": "图表", "poem_explanation": "不宜"}'
    assert bk.result_from_text("x", unfit).annotation.create_condition is False
    assert bk.result_from_text("x", "").error_kind == "empty"
    assert bk.result_from_text("x", "平平仄仄").error_kind == "invalid_json"
    assert bk.result_from_text("x", '{"poem_title": 3').error_kind == "invalid_json"
    assert bk.result_from_text("x", '{"poem_title": "', truncated=True).error_kind == "truncated"
    invalid = bk.result_from_text("x", '{"poem_type": "散文", "poem_content": "a"}')
    assert invalid.error_kind == "schema_invalid" and "poem_type" in invalid.error_message
    assert invalid.raw_text == '{"poem_type": "散文", "poem_content": "a"}'
