"""Project paths, path resolution and YAML configuration loading (as dicts or as validated settings models)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = Path(os.environ.get("POEMLIB_ROOT", PACKAGE_DIR.parent)).resolve()
CONFIG_DIR = PROJECT_ROOT / "configs"
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_DIR = DATA_DIR / "sample"
RESOURCES_DIR = PACKAGE_DIR / "resources"
# Everything the offline pipeline produces lands under work/ (untracked) so notebooks can hand files to each other.
WORK_DIR = Path(os.environ.get("POEMLIB_WORK", PROJECT_ROOT / "work")).resolve()


SettingsT = TypeVar("SettingsT", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing or malformed."""


def resolve_path(value: str | os.PathLike[str], *, prefer_cwd: bool = False) -> Path:
    """A user or config path made absolute: `~` and `$VARS` expanded; absolute as is; `work/…` under WORK_DIR
    (POEMLIB_WORK); other relative paths under the project root, or the current directory first when `prefer_cwd`
    and the path exists there (command-line arguments)."""
    path = Path(os.path.expanduser(os.path.expandvars(str(value))))
    if path.is_absolute():
        return path
    if path.parts and path.parts[0] == "work":
        return WORK_DIR.joinpath(*path.parts[1:])
    if prefer_cwd and path.exists():
        return path.resolve()
    return PROJECT_ROOT / path


def resolve_model_ref(value: str) -> str:
    """A model or adapter reference: local paths (`work/…`, `./…`, `~/…`, absolute, or existing under the project)
    made absolute; anything else is a hub id and stays as it is. Comma-separated lists are resolved item by item."""
    parts = []
    for item in (part.strip() for part in str(value).split(",")):
        path = Path(item).expanduser()
        is_local = path.is_absolute() or item.startswith((".", "~")) or (path.parts and path.parts[0] == "work") or (PROJECT_ROOT / path).exists()
        parts.append(str(resolve_path(item).resolve()) if is_local else item)
    return ",".join(parts)


# The one setting that names the base model for training and inference alike: a training config's
# `model_name_or_path`, which this environment variable overrides everywhere at once.
BASE_MODEL_ENV = "POEMLIB_BASE_MODEL"


def base_model_of(train_config: Mapping[str, Any]) -> str:
    """The base model a training config trains (and inference then loads): POEMLIB_BASE_MODEL, else its
    model_name_or_path, resolved with resolve_model_ref."""
    value = os.environ.get(BASE_MODEL_ENV) or train_config.get("model_name_or_path")
    if not value:
        raise ConfigError("the training config names no model_name_or_path (and POEMLIB_BASE_MODEL is not set)")
    return resolve_model_ref(str(value))


def adapter_dir_of(train_config: Mapping[str, Any]) -> Path:
    """Where a training config writes its LoRA adapter (its output_dir), which inference then loads."""
    if not train_config.get("output_dir"):
        raise ConfigError("the training config names no output_dir")
    return resolve_path(str(train_config["output_dir"]))


def describe_validation_error(exc: ValidationError, *, limit: int = 3, root: str = "(root)") -> str:
    """A pydantic error as one line: the count and the first `limit` problems as `field.path: message`."""
    errors = exc.errors()
    shown = "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ())) or root}: {err.get('msg', '')}" for err in errors[:limit])
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return f"{shown}{more}"


def config_path(name: str | os.PathLike[str]) -> Path:
    """Resolve a config given as a path or as a bare name in configs/ (with or without .yaml)."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"config {str(name)!r} not found (looked in {CONFIG_DIR})")


def load_config(name: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a YAML config into a dict, naming the file on any error."""
    path = config_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def load_settings(
    model: type[SettingsT],
    source: str | os.PathLike[str] | Mapping[str, Any] | SettingsT | None,
    *,
    default: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SettingsT:
    """A validated settings model from a config name/path (default: `default`), a mapping or a model instance;
    `overrides` (None values ignored) win over the file. Errors name the file and every bad field."""
    if isinstance(source, model) and not overrides:
        return source
    label = model.__name__
    if isinstance(source, BaseModel):
        data: dict[str, Any] = source.model_dump()
    elif isinstance(source, Mapping):
        data = dict(source)
    elif source is None and default is None:
        data = {}
    else:
        name = source if source is not None else default
        label = str(config_path(name))
        data = load_config(name)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {describe_validation_error(exc, limit=10)}") from exc


def vision_budget(profile: str = "tiny") -> dict[str, int]:
    """Pixel limits (image_min_pixels, image_max_pixels) shared by training and inference for a model profile."""
    cfg = load_config("vision")
    if profile not in cfg:
        raise ConfigError(f"configs/vision.yaml has no profile {profile!r}; known: {sorted(cfg)}")
    return {k: int(v) for k, v in cfg[profile].items()}
