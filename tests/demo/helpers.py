"""Shared pieces of the demo tests: poems, fake and recording backends, a polling wait, a random LoRA adapter and a
backends.yaml serving the tiny models."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from poemlib.backends import BackendStatus
from poemlib.schema import Annotation, GenerationResult, PoemRequest, TokenUsage

LIBAI = "朝辞白帝彩云间，\n千里江陵一日还。\n两岸猿声啼不住，\n轻舟已过万重山。"
JINGYESI = "床前明月光，\n疑是地上霜。\n举头望明月，\n低头思故乡。"


def poem_result(backend: str = "gemini", content: str = LIBAI, poem_type: str = "七言绝句", title: str = "早发白帝城") -> GenerationResult:
    """A well-formed answer with a poem, stats and token usage."""
    annotation = Annotation(create_condition=True, poem_type=poem_type, poem_title=title, poem_content=content,
                            poem_explanation="以轻快之笔写归舟之速。")
    return GenerationResult(backend=backend, annotation=annotation, raw_text=annotation.target_text(), latency_s=1.25,
                            usage=TokenUsage(prompt_tokens=321, output_tokens=54, total_tokens=375))


class FakeBackend:
    """A backend that answers after a delay (or on an event), or raises."""

    def __init__(self, name, result=None, *, delay=0.0, gate=None, error=None, state="ready"):
        self.name = name
        self.label = f"Fake {name}"
        self.result = result
        self.delay = delay
        self.gate = gate
        self.error = error
        self.state = state
        self.calls: list[tuple[list, PoemRequest]] = []

    def status(self):
        return BackendStatus(name=self.name, state=self.state, detail="fake", ready=self.state in ("ready", "offline replay"))

    def generate(self, images, request):
        self.calls.append((list(images), request))
        if self.gate is not None:
            assert self.gate.wait(20), "test gate never opened"
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [self.result.model_copy(update={"backend": self.name})]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until predicate() is true (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class RecordingBackend:
    """A real backend that also records every request it is given (what the controller built)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.label = backend.label
        self.requests: list[PoemRequest] = []
        self._lock = threading.Lock()

    def status(self) -> BackendStatus:
        return self.backend.status()

    def generate(self, images, request: PoemRequest) -> list[GenerationResult]:
        with self._lock:
            self.requests.append(request)
        return self.backend.generate(images, request)


def make_random_lora(model_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A small PEFT LoRA adapter with random (non-zero) weights on the tiny model, saved where the lora backend looks."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    get_peft_model(model, config).save_pretrained(str(out_dir))
    assert (out_dir / "adapter_config.json").is_file()
    return out_dir


def write_tiny_backends(path: Path, model_dir: Path, adapter: Path, *, generation: dict[str, Any] | None = None, **settings: Any) -> Path:
    """A backends.yaml whose offline profile serves replayed Gemini, the tiny base model and it with `adapter`;
    `settings` are the profile's own (pixels, batch_size, max_new_tokens_cap, …), `generation` the sampling defaults."""
    profile = {
        "pixels": "tiny", "device": "cpu", "cpu_threads": 1, **settings,
        "gemini": {"mode": "replay", "label": "Gemini (replay)"},
        "base": {"model_dir": str(model_dir), "label": "base (tiny)"},
        "lora": {"adapter_dir": str(adapter), "label": "lora (tiny)"},
    }
    document: dict[str, Any] = {"profiles": {"offline": profile}}
    if generation is not None:
        document["generation"] = generation
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path
