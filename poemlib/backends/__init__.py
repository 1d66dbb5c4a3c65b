"""Generation backends: one protocol, `generate(images, request) -> [GenerationResult]`, for Gemini, base Qwen and LoRA.

    base.py             Backend protocol, BackendStatus, result_from_text, UnavailableBackend
    gemini.py           GeminiBackend (annotation's request through poemlib.gemini), the offline replay server
    (the ONE qwen2_vl prompt and resize rule lives in poemlib.qwen_vl, shared with training)
    qwen_engine.py      QwenEngine (one model, batched generate, LoRA on/off) and QwenBackend (base / lora)
    constraint.py       ConstraintEngines: 格律 constraint engines kept per form, a fresh processor per call (constrain=True)
    settings.py         configs/backends.yaml as validated settings; profile_config
    registry.py         load_backends (cached; base and lora share one engine), clear_backends

`load_backends(names, profile=..., config=...)` builds them from configs/backends.yaml and caches them per process.
A backend that cannot load still comes back: its `status()` says why and `generate()` returns error results.
torch, transformers and google-genai are imported only when a backend loads.
"""

from poemlib.backends.base import (
    BACKEND_NAMES,
    Backend,
    BackendStatus,
    ImageInput,
    UnavailableBackend,
    error_results,
    result_from_text,
)
from poemlib.backends.constraint import (
    ConstrainedCall,
    ConstraintEngines,
    ConstraintUnavailable,
)
from poemlib.backends.gemini import GeminiBackend, replay_server
from poemlib.backends.qwen_engine import QwenBackend, QwenEngine, select_device_dtype
from poemlib.backends.registry import clear_backends, load_backends
from poemlib.backends.settings import (
    BackendsSettings,
    ProfileSettings,
    backends_config,
    load_profile,
    profile_config,
)
from poemlib.qwen_vl import (
    prepare_for_qwen,
    qwen_prompt_for,
    regularize_for_qwen,
    render_qwen_prompt,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendStatus",
    "BackendsSettings",
    "ConstrainedCall",
    "ConstraintEngines",
    "ConstraintUnavailable",
    "GeminiBackend",
    "ImageInput",
    "ProfileSettings",
    "QwenBackend",
    "QwenEngine",
    "UnavailableBackend",
    "backends_config",
    "clear_backends",
    "error_results",
    "load_backends",
    "load_profile",
    "prepare_for_qwen",
    "profile_config",
    "qwen_prompt_for",
    "regularize_for_qwen",
    "render_qwen_prompt",
    "replay_server",
    "result_from_text",
    "select_device_dtype",
]
