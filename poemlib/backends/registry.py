"""Building backends from a profile of configs/backends.yaml, cached per process (base and lora share one engine).

Where the Qwen weights come from, first match wins:
  base model   $<base.model_dir_env>, else base.model_dir, else the profile's training config through
               poemlib.config.base_model_of (POEMLIB_BASE_MODEL, else its model_name_or_path); offline with none of
               these: the tiny model (built on first use)
  LoRA adapter $<lora.adapter_dir_env>, else lora.adapter_dir, else the training config's output_dir
               (poemlib.config.adapter_dir_of: where `poemlib train <train_config>` writes the adapter)
The training config is the profile's `train_config` (a name in configs/ or a path). A base model that is not a local
path (e.g. `Qwen/Qwen2.5-VL-7B-Instruct`) is a hub id, loaded as training loads it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poemlib.backends.base import BACKEND_NAMES, Backend, UnavailableBackend
from poemlib.backends.settings import ProfileSettings, QwenSection, load_profile
from poemlib.config import (
    adapter_dir_of,
    base_model_of,
    config_path,
    load_config,
    resolve_path,
)

log = logging.getLogger(__name__)

_BACKENDS: dict[tuple[str, str, str], Any] = {}
_ENGINES: dict[tuple[str, ...], Any] = {}
_LOAD_LOCK = threading.RLock()


def _configured(section: QwenSection, key: str) -> str | None:
    """A path of a base/lora section: its environment override first, then the value written in the profile."""
    env = getattr(section, f"{key}_env")
    if env and os.environ.get(env):
        return os.environ[env]
    return getattr(section, key)


def base_model_location(profile: ProfileSettings, profile_name: str) -> Path | str:
    """The base model: a local directory (Path) or a hub id (str); offline without one: the tiny model."""
    configured = _configured(profile.base, "model_dir")
    if configured:  # a directory by name: always a path
        return resolve_path(configured)
    if profile.train_config:
        model = base_model_of(load_config(profile.train_config))  # local paths come back absolute
        return Path(model) if Path(model).is_absolute() else model
    if profile_name != "offline":
        raise FileNotFoundError("no base model configured (base.model_dir or a train_config)")
    from poemlib.offline.tiny_qwen import ensure_tiny_qwen

    return Path(ensure_tiny_qwen())


def adapter_location(profile: ProfileSettings) -> Path | None:
    """The LoRA adapter directory, or None when the profile names none."""
    configured = _configured(profile.lora, "adapter_dir")
    if configured:
        return resolve_path(configured)
    return adapter_dir_of(load_config(profile.train_config)) if profile.train_config else None


def _engine(model: Path | str, profile: ProfileSettings) -> Any:
    """The cached engine for a model and runtime settings (one copy of the weights per process)."""
    from poemlib.backends.qwen_engine import QwenEngine

    runtime = profile.model_dump(include={"pixels", "device", "dtype", "batch_size", "max_new_tokens_cap", "cpu_threads"})
    where = str(model.resolve()) if isinstance(model, Path) else model
    key = (where, *(f"{k}={v}" for k, v in sorted(runtime.items())), repr(sorted(profile.generation.items())))
    engine = _ENGINES.get(key)
    if engine is None:
        engine = QwenEngine(model, generation=profile.generation, **runtime)
        _ENGINES[key] = engine
    return engine


def _load_qwen(name: str, profile: ProfileSettings, profile_name: str) -> Any:
    """base or lora for a profile, or an UnavailableBackend saying why not."""
    from poemlib.backends.qwen_engine import QwenBackend

    label = getattr(profile, name).label or f"Qwen2.5-VL {name}"
    try:
        model = base_model_location(profile, profile_name)
    except Exception as exc:  # noqa: BLE001 - no model configured, unreadable training config, tiny model builder failing
        return UnavailableBackend(name, label, "model path missing", f"{type(exc).__name__}: {exc}")
    if isinstance(model, Path) and not (model / "config.json").exists():
        return UnavailableBackend(name, label, "model path missing", f"no model at {model} (config.json missing)")
    adapter_dir = None
    if name == "lora":
        adapter_dir = adapter_location(profile)
        if adapter_dir is None or not (adapter_dir / "adapter_config.json").exists():
            hint = f" (run `poemlib train {profile.train_config}` first)" if profile.train_config else ""
            hint = hint or (" (run notebook 04 / `poemlib train` first)" if profile_name == "offline" else "")
            return UnavailableBackend(name, label, "adapter missing", f"no PEFT adapter at {adapter_dir}{hint}")
    try:
        engine = _engine(model, profile)
        if adapter_dir is not None:
            engine.attach_adapter(adapter_dir)
    except Exception as exc:
        log.exception("loading %s failed", name)
        return UnavailableBackend(name, label, "error", f"{type(exc).__name__}: {exc}")
    return QwenBackend(name, label, engine, use_adapter=name == "lora")


def _load_gemini(profile: ProfileSettings, profile_name: str) -> Any:
    """Gemini for a profile: the loopback replay server offline, the API with a key for real."""
    section = profile.gemini
    try:
        from poemlib import gemini
        from poemlib.backends.gemini import GeminiBackend, replay_server

        if (section.mode or ("replay" if profile_name == "offline" else "api")) == "replay":
            server = replay_server()
            return GeminiBackend("gemini", section.label, api_key=gemini.OFFLINE_API_KEY, base_url=server.base_url,
                                 annotate_config=section.annotate_config, state="offline replay")
        key = os.environ.get(section.api_key_env, "").strip() or gemini.resolve_api_key()
        if not key:
            return UnavailableBackend("gemini", section.label, "no key", f"set {section.api_key_env} (or put it in .env) to use Gemini", error_kind="auth")
        return GeminiBackend("gemini", section.label, api_key=key, base_url=section.base_url, annotate_config=section.annotate_config)
    except Exception as exc:
        log.exception("loading gemini failed")
        return UnavailableBackend("gemini", section.label, "error", f"{type(exc).__name__}: {exc}", error_kind="api_error")


def _parse_names(names: Sequence[str] | str) -> list[str]:
    """Backend names from a list or a comma-separated string; unknown names refused."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; known: {list(BACKEND_NAMES)}")
    return list(names)


def load_backends(
    names: Sequence[str] | str = BACKEND_NAMES,
    *,
    profile: str = "offline",
    config: str | os.PathLike | None = None,
) -> dict[str, Backend]:
    """Backends by name for a profile of configs/backends.yaml, cached per process (same objects on every call).

    base and lora share one model; a backend that cannot load is returned as an object whose status() says why.
    """
    names = _parse_names(names)
    config_key = str(config_path(config or "backends").resolve())
    settings = load_profile(profile, config)
    out: dict[str, Backend] = {}
    with _LOAD_LOCK:
        # lora before base so a base loaded later still shares the adapter-wrapped model
        for name in sorted(names, key=lambda n: {"lora": 0, "base": 1, "gemini": 2}[n]):
            key = (profile, config_key, name)
            backend = _BACKENDS.get(key)
            if backend is None or isinstance(backend, UnavailableBackend):
                # an unavailable backend is retried (the adapter may exist now); if it still fails the same object stays
                fresh = _load_gemini(settings, profile) if name == "gemini" else _load_qwen(name, settings, profile)
                if backend is None or not isinstance(fresh, UnavailableBackend):
                    backend = fresh
                else:
                    backend.update_status(fresh.status())
                _BACKENDS[key] = backend
            out[name] = backend
    return {name: out[name] for name in names}


def clear_backends() -> None:
    """Forget every cached backend and engine (frees the models once no one else holds them)."""
    with _LOAD_LOCK:
        _BACKENDS.clear()
        _ENGINES.clear()
