"""Merging a LoRA adapter into its base model with `llamafactory-cli export`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from poemlib.config import resolve_model_ref, resolve_path
from poemlib.train.results import RESOLVED_ARGS
from poemlib.train.run import _run_cli


def export(
    adapter_dir: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    *,
    model_name_or_path: str | None = None,
    template: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    **overrides: Any,
) -> Path:
    """Merge a LoRA adapter into its base model with `llamafactory-cli export`; returns export_dir.

    The base model and template default to those of the training run (`poemlib_train_args.yaml` next to the adapter),
    else to the adapter's `base_model_name_or_path` and qwen2_vl.
    """
    adapter_dir = resolve_path(adapter_dir).resolve()
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} holds no adapter_config.json")
    train_args: dict[str, Any] = {}
    for candidate in (adapter_dir / RESOLVED_ARGS, adapter_dir.parent / RESOLVED_ARGS):
        if candidate.exists():
            train_args = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            break
    if model_name_or_path is None:
        model_name_or_path = train_args.get("model_name_or_path") or json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not model_name_or_path:
        raise ValueError("cannot tell the base model; pass model_name_or_path")
    cfg: dict[str, Any] = {
        "model_name_or_path": resolve_model_ref(model_name_or_path),
        "adapter_name_or_path": str(adapter_dir),
        "template": template or train_args.get("template", "qwen2_vl"),
        "finetuning_type": "lora",
        "trust_remote_code": True,
        "export_dir": str(resolve_path(export_dir).resolve()),
        "export_size": 5,
        "export_device": "cpu",
        "export_legacy_format": False,
    }
    for key in ("image_max_pixels", "image_min_pixels"):
        if key in train_args:
            cfg[key] = train_args[key]
    cfg.update(overrides)
    out = Path(cfg["export_dir"])
    out.mkdir(parents=True, exist_ok=True)
    _run_cli("export", cfg, out / "poemlib_export_args.yaml", out / "export_stdout.log", cwd=cwd, env=None, timeout=timeout, progress=False)
    return out
