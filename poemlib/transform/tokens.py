"""Token lengths exactly as LLaMA-Factory encodes a row (its template and multimodal plugin, the real processor),
and the training settings they depend on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from poemlib.config import base_model_of, load_config, resolve_path
from poemlib.instructions import IMAGE_PLACEHOLDER


class TokenCounter:
    """Token length of a row exactly as LLaMA-Factory encodes it: template, expanded image tokens, processor."""

    def __init__(self, model_path: str | os.PathLike[str], *, image_max_pixels: int, image_min_pixels: int, template: str = "qwen2_vl") -> None:
        from llamafactory.data.template import TEMPLATES
        from transformers import AutoProcessor

        if template not in TEMPLATES:
            raise ValueError(f"unknown LLaMA-Factory template {template!r}")
        self.template = TEMPLATES[template]
        try:
            self.processor = AutoProcessor.from_pretrained(str(model_path))
        except OSError as exc:
            raise FileNotFoundError(
                f"cannot load the processor of {model_path} for the length check ({exc}); pass processor=/--processor "
                "a local copy of the training model"
            ) from exc
        self.tokenizer = self.processor.tokenizer
        # What LLaMA-Factory's patch_processor sets from image_max_pixels / image_min_pixels.
        for key, value in (("image_max_pixels", image_max_pixels), ("image_min_pixels", image_min_pixels), ("image_do_pan_and_scan", False), ("crop_to_patches", False)):
            setattr(self.processor, key, value)
        self.model_path = str(model_path)
        self._visual: dict[str, int] = {}

    def visual_tokens(self, key: str, image: Any) -> int:
        """Vision tokens of one image at the pixel budget (cached by key)."""
        if key not in self._visual:
            plugin = self.template.mm_plugin
            mm = plugin._get_mm_inputs([image], [], [], self.processor)
            merge = getattr(self.processor.image_processor, "merge_size", 2) ** 2
            self._visual[key] = int(mm["image_grid_thw"][0].prod()) // merge
        return self._visual[key]

    def count(self, messages: list[dict[str, str]], image: Any, key: str) -> tuple[int, int]:
        """(total tokens, visual tokens) of a one-image conversation."""
        n_vis = self.visual_tokens(key, image)
        plugin = self.template.mm_plugin
        expanded = []
        for message in messages:
            content = message["content"].replace(IMAGE_PLACEHOLDER, f"{plugin.vision_bos_token}{plugin.image_token * n_vis}{plugin.vision_eos_token}")
            expanded.append({"role": message["role"], "content": content})
        prompt_ids, answer_ids = self.template.encode_oneturn(self.tokenizer, expanded)
        return len(prompt_ids) + len(answer_ids), n_vis


_COUNTERS: dict[tuple[str, int, int, int, str], TokenCounter] = {}


def _token_counter(processor_path: str, max_pixels: int, min_pixels: int, template: str) -> TokenCounter:
    """A TokenCounter per processor and budget, reused within a process (loading a processor takes a second)."""
    local = Path(processor_path)
    stamp = (local / "tokenizer.json").stat().st_mtime_ns if (local / "tokenizer.json").exists() else 0
    key = (str(local.resolve()) if local.exists() else processor_path, stamp, max_pixels, min_pixels, template)
    if key not in _COUNTERS:
        _COUNTERS[key] = TokenCounter(processor_path, image_max_pixels=max_pixels, image_min_pixels=min_pixels, template=template)
    counter = _COUNTERS[key]
    counter._visual.clear()  # images are keyed by sha256; a rebuilt model dir may change the processor's grid
    return counter


def training_settings(train_config: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """cutoff_len, pixel budget, template and model path of a training config (name, path or dict)."""
    cfg = load_config(train_config) if not isinstance(train_config, dict) else train_config
    missing = [k for k in ("cutoff_len", "image_max_pixels", "image_min_pixels", "model_name_or_path") if k not in cfg]
    if missing:
        raise ValueError(f"training config lacks {missing}")
    return {
        "cutoff_len": int(cfg["cutoff_len"]),
        "image_max_pixels": int(cfg["image_max_pixels"]),
        "image_min_pixels": int(cfg["image_min_pixels"]),
        "template": cfg.get("template", "qwen2_vl"),
        "model_name_or_path": base_model_of(cfg),  # POEMLIB_BASE_MODEL swaps it here as in training
    }


def default_processor_path(model_name_or_path: str) -> str:
    """Where the processor for the length check comes from: a local model dir (the tiny model is built on demand)."""
    local = resolve_path(model_name_or_path)
    if local.exists():
        return str(local)
    if "tiny" in local.name:
        from poemlib.offline.tiny_qwen import ensure_tiny_qwen

        return str(ensure_tiny_qwen(local))
    return model_name_or_path  # a hub id: from_pretrained finds it in the local cache or fails offline
