"""The real chain as a GPU user walks it, with only the model swapped for the tiny one (POEMLIB_BASE_MODEL, the one
setting) and the steps cut: `poemlib transform`/`train` with the shipped 7B config, then `poemlib evaluate --profile
real` with the Gemini endpoint pointed at the loopback server. The LoRA column must load the adapter training wrote,
with no path given by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poemlib.io import write_jsonl
from poemlib.transform import reference_records

pytestmark = pytest.mark.slow

# What a CPU run must cut from the GPU recipe; nothing here names a path.
STEPS_CUT = ["max_steps=2", "bf16=false", "use_cpu=true", "eval_strategy=no", "save_strategy=no", "logging_steps=1",
             "per_device_train_batch_size=2", "gradient_accumulation_steps=1", "preprocessing_num_workers=1", "dataloader_num_workers=0"]


def _poemlib(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, failing with its output when it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "poemlib", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"poemlib {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_train_then_evaluate_real_profile_finds_the_adapter(tmp_path: Path, tiny_qwen_dir: Path) -> None:
    from poemlib.offline.gemini import GeminiServer

    work = tmp_path / "work"
    env = {**os.environ, "POEMLIB_WORK": str(work), "POEMLIB_BASE_MODEL": str(tiny_qwen_dir), "POEMLIB_PROGRESS": "0"}
    env.pop("POEMLIB_LORA_ADAPTER", None)
    clean = tmp_path / "clean.jsonl"
    write_jsonl(clean, [r.model_dump(mode="json") for r in reference_records()])
    _poemlib(["transform", str(clean), "--out", "work/dataset", "--train-config", "qwen2_5vl_7b_lora", "--val", "0.15", "--test", "0.15"], env)
    _poemlib(["train", "qwen2_5vl_7b_lora", *STEPS_CUT, "--no-progress"], env)
    adapter = work / "train" / "qwen2_5vl_7b_lora"
    assert (adapter / "adapter_model.safetensors").is_file()
    trained_on = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    assert Path(trained_on).resolve() == tiny_qwen_dir.resolve()

    with GeminiServer(mode="replay") as server:
        env_eval = {**env, "GOOGLE_GEMINI_BASE_URL": server.base_url, "GEMINI_API_KEY": "a-real-looking-key"}
        out = tmp_path / "eval"
        _poemlib(["evaluate", "--profile", "real", "--backends", "gemini,base,lora", "--data", "work/dataset", "--out", str(out), "--no-judge"], env_eval, timeout=1200)
        assert server.stats.requests > 0, "the real profile's Gemini backend never reached the endpoint"
    status = json.loads((out / "status.json").read_text(encoding="utf-8"))
    lora = status["backends"]["lora"]
    assert lora["ready"], lora
    assert str(adapter) in lora["detail"], f"the LoRA column did not load {adapter}: {lora}"
    assert str(tiny_qwen_dir) in status["backends"]["base"]["detail"]
