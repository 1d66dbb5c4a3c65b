"""Backends fixtures: one torch thread, no cached backends between tests, a backends.yaml writer, a random adapter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from poemlib import backends as bk
from tests.fixtures import MIXED_ASPECT_PHOTOS

PHOTOS = list(MIXED_ASPECT_PHOTOS)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tiny model runs far faster on one intra-op thread (see configs/backends.yaml); restore the setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts (and ends) without cached backends, so tests with different adapters do not meet."""
    bk.clear_backends()
    yield
    bk.clear_backends()


def write_backends_config(tmp_path: Path, *, model_dir: Path | None, adapter_dir: Path | None, profile: str = "offline", **extra) -> Path:
    """A backends.yaml in tmp_path with one profile pointing at the given model and adapter."""
    prof = {
        "pixels": "tiny", "batch_size": 8, "device": "cpu", "dtype": "auto", "max_new_tokens_cap": 24, "cpu_threads": 1,
        "gemini": {"mode": "replay", "label": "Gemini (replay)"},
        "base": {"model_dir": str(model_dir) if model_dir else None, "label": "base (tiny)"},
        "lora": {"adapter_dir": str(adapter_dir) if adapter_dir else None, "label": "lora (tiny)"},
    }
    prof.update(extra)
    path = tmp_path / f"backends_{profile}.yaml"
    path.write_text(yaml.safe_dump({"generation": {"top_p": 0.9, "top_k": 50}, "profiles": {profile: prof}}, allow_unicode=True))
    return path


@pytest.fixture()
def backends_config() -> Callable[..., Path]:
    """write_backends_config, as a fixture."""
    return write_backends_config


@pytest.fixture(scope="module")
def random_adapter(tiny_qwen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random non-zero weights (init_lora_weights=False), so it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir))
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    get_peft_model(model, config).save_pretrained(str(out))
    return out
