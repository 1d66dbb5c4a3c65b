"""A quick check of what the adapter changed: how often base and base + adapter answer with parseable annotation
JSON for the same photos and instruction (evaluation does the full job)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from poemlib.qwen_vl import prepare_for_qwen, render_qwen_prompt
from poemlib.config import resolve_model_ref, resolve_path, vision_budget
from poemlib.instructions import render_instruction
from poemlib.schema import PoemRequest, parse_annotation_text


class ParseRates(BaseModel):
    """How often base and tuned model answer with parseable annotation JSON for the same photos and instruction."""

    n: int
    base_ok: int
    tuned_ok: int
    instruction: str
    samples: list[dict[str, Any]] = Field(default_factory=list, description="per image: name, parse ok and text of each model")

    @property
    def base_rate(self) -> float:
        """Share of base answers that parse."""
        return self.base_ok / self.n if self.n else 0.0

    @property
    def tuned_rate(self) -> float:
        """Share of tuned answers that parse."""
        return self.tuned_ok / self.n if self.n else 0.0

    def table(self) -> list[dict[str, Any]]:
        """One row per image: parse ok and the first characters of each answer."""
        return [
            {"image": s["image"], "base_ok": s["base_ok"], "tuned_ok": s["tuned_ok"], "base_text": s["base_text"][:60], "tuned_text": s["tuned_text"][:60]}
            for s in self.samples
        ]


def _parses(text: str) -> bool:
    """True when the text holds a valid annotation."""
    try:
        parse_annotation_text(text)
    except ValueError:
        return False
    return True


def compare_parse_rates(
    model_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str],
    images: list[str | os.PathLike[str]],
    *,
    request: PoemRequest | None = None,
    profile: str = "tiny",
    max_new_tokens: int = 384,
    batch_size: int = 8,
) -> ParseRates:
    """Greedy answers of the base model and of base + adapter for the same photos; count parseable annotations.

    The instruction is the pool's deterministic rendering of `request` (default: generic), the prompt and the photo
    prepared by the backends' one Qwen rule (LLaMA-Factory's qwen2_vl template, its resize at the profile's budget).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    budget = vision_budget(profile)
    instruction = render_instruction(request or PoemRequest())
    prompt = render_qwen_prompt(instruction)
    processor = AutoProcessor.from_pretrained(resolve_model_ref(str(model_dir)))
    processor.tokenizer.padding_side = "left"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(resolve_model_ref(str(model_dir)), dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(model, str(resolve_path(adapter_dir))).eval()
    stop = [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if processor.tokenizer.eos_token_id is not None:
        stop.append(processor.tokenizer.eos_token_id)

    def answers(use_adapter: bool) -> list[str]:
        texts: list[str] = []
        for start in range(0, len(images), batch_size):
            chunk = [prepare_for_qwen(p, budget) for p in images[start : start + batch_size]]
            inputs = processor(text=[prompt] * len(chunk), images=chunk, padding=True, return_tensors="pt")
            adapter_off = model.disable_adapter() if not use_adapter else contextlib.nullcontext()
            with torch.no_grad(), adapter_off:
                out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=processor.tokenizer.pad_token_id)
            texts.extend(processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
        return texts

    base, tuned = answers(False), answers(True)
    samples = [{"image": Path(p).name, "base_ok": _parses(b), "tuned_ok": _parses(t), "base_text": b, "tuned_text": t} for p, b, t in zip(images, base, tuned)]
    return ParseRates(n=len(images), base_ok=sum(s["base_ok"] for s in samples), tuned_ok=sum(s["tuned_ok"] for s in samples), instruction=instruction, samples=samples)
