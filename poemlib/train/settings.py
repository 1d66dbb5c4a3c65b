"""Training configs: loading, `key=value` overrides, project paths made absolute, keep-best."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from poemlib.config import ConfigError, base_model_of, config_path, resolve_model_ref, resolve_path

# Keys whose relative values are project paths (work/… under WORK_DIR, else PROJECT_ROOT).
PATH_KEYS = ("output_dir", "dataset_dir", "media_dir", "deepspeed", "tokenized_path", "cache_dir", "export_dir", "logging_dir")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`key=value` strings → dict, values parsed as YAML scalars (5e-5 → float, true → bool, 3 → int)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        parsed = yaml.safe_load(value) if value.strip() else None
        if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
            parsed = value.strip()  # YAML 1.1 reads no/yes/on/off as booleans; eval_strategy=no means the string
        elif isinstance(parsed, str) and _looks_like_float(parsed):
            parsed = float(parsed)
        out[key.strip()] = parsed
    return out


def _looks_like_float(text: str) -> bool:
    """YAML 1.1 reads '5e-5' as a string; LLaMA-Factory wants a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_train_config(config: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """A training YAML (name in configs/, path, or an already loaded dict) as a dict."""
    if isinstance(config, dict):
        return dict(config)
    path = config_path(config)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def resolve_config(config: str | os.PathLike[str] | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config + overrides with the base model named once (base_model_of), project-relative paths made absolute and
    media_dir defaulted to dataset_dir."""
    cfg = load_train_config(config)
    cfg.update(overrides or {})
    if "model_name_or_path" not in (overrides or {}):
        cfg["model_name_or_path"] = base_model_of(cfg)
    for key in PATH_KEYS:
        if cfg.get(key):
            cfg[key] = str(resolve_path(str(cfg[key])).resolve())
    for key in ("model_name_or_path", "adapter_name_or_path"):
        if cfg.get(key):
            cfg[key] = resolve_model_ref(str(cfg[key]))
    if cfg.get("dataset_dir") and not cfg.get("media_dir"):
        cfg["media_dir"] = cfg["dataset_dir"]
    if "output_dir" not in cfg:
        raise ConfigError("the training config needs an output_dir")
    return cfg


def apply_keep_best(cfg: dict[str, Any], early_stopping_patience: int | None = None) -> dict[str, Any]:
    """Keep the checkpoint with the lowest eval_loss (and optionally stop after `patience` evaluations without gain)."""
    cfg = dict(cfg)
    if not (cfg.get("eval_dataset") or cfg.get("val_size")):
        raise ValueError("keep_best needs an eval_dataset (or val_size) to compute eval_loss")
    cfg.setdefault("eval_strategy", "steps")
    cfg["save_strategy"] = cfg["eval_strategy"]
    if cfg["eval_strategy"] == "steps":
        cfg["save_steps"] = cfg.get("eval_steps") or cfg.get("save_steps") or 100
        cfg["eval_steps"] = cfg["save_steps"]
    cfg["load_best_model_at_end"] = True
    cfg["metric_for_best_model"] = "eval_loss"
    cfg["greater_is_better"] = False
    cfg.setdefault("save_total_limit", 2)
    if early_stopping_patience:
        cfg["early_stopping_steps"] = int(early_stopping_patience)
    return cfg


def ensure_local_model(cfg: dict[str, Any]) -> None:
    """Build the offline tiny model on demand when the config points at its (missing) directory."""
    model = cfg.get("model_name_or_path")
    if not model or not Path(model).is_absolute() or Path(model).exists():
        return
    if "tiny" in Path(model).name:
        from poemlib.offline.tiny_qwen import ensure_tiny_qwen

        ensure_tiny_qwen(Path(model))
