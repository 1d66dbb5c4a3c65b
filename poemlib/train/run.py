"""Running llamafactory-cli as a subprocess: environment, resolved-args file, timeout, a progress bar fed from
LLaMA-Factory's trainer_log.jsonl, and the log's tail on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from poemlib.progress import progress_bar
from poemlib.train.results import RESOLVED_ARGS, STDOUT_LOG, TRAINER_LOG, TrainResult, collect_result
from poemlib.train.settings import apply_keep_best, ensure_local_model, resolve_config


class TrainingFailed(RuntimeError):
    """llamafactory-cli exited non-zero; the message ends with the tail of its output."""

    def __init__(self, message: str, log_tail: str, log_path: Path | None = None, returncode: int | None = None) -> None:
        super().__init__(f"{message}\n--- last lines of {log_path or 'the log'} ---\n{log_tail}")
        self.log_tail = log_tail
        self.log_path = log_path
        self.returncode = returncode


def _cli() -> list[str]:
    """The llamafactory-cli of this interpreter's environment."""
    exe = Path(sys.executable).parent / "llamafactory-cli"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("llamafactory-cli")
    if found:
        return [found]
    return [sys.executable, "-m", "llamafactory.cli"]


def _subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for llamafactory-cli: offline hub, no telemetry, project importable."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("WANDB_DISABLED", "true")
    env.setdefault("DISABLE_VERSION_CHECK", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _tail(path: Path, lines: int = 40) -> str:
    """Last lines of a text file."""
    if not path.exists():
        return "(no output)"
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return "".join(deque(fh, maxlen=lines)).rstrip()


def _run_cli(
    command: str,
    cfg: dict[str, Any],
    args_path: Path,
    stdout_path: Path,
    *,
    cwd: str | os.PathLike[str] | None,
    env: dict[str, str] | None,
    timeout: float | None,
    progress_log: Path | None = None,
    progress: bool = True,
    desc: str = "train",
) -> None:
    """Write cfg to args_path and run `llamafactory-cli <command> args_path`, streaming trainer_log.jsonl into a bar."""
    args_path.parent.mkdir(parents=True, exist_ok=True)
    args_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    offset = progress_log.stat().st_size if progress_log is not None and progress_log.exists() else 0
    bar = progress_bar(None, desc=desc, unit="step") if progress and progress_log is not None else None
    start = time.monotonic()
    with stdout_path.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [*_cli(), command, str(args_path)],
            cwd=str(cwd) if cwd is not None else None,
            env=_subprocess_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:
                try:
                    returncode = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    returncode = None
                if bar is not None:
                    offset = _update_bar(bar, progress_log, offset)
                if returncode is not None:
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    proc.kill()
                    proc.wait()
                    raise TrainingFailed(f"llamafactory-cli {command} exceeded {timeout:.0f} s and was killed", _tail(stdout_path), stdout_path)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        finally:
            if bar is not None:
                bar.close()
    if returncode != 0:
        raise TrainingFailed(f"llamafactory-cli {command} {args_path} failed with exit code {returncode}", _tail(stdout_path), stdout_path, returncode)


def _update_bar(bar: Any, log: Path | None, offset: int) -> int:
    """Advance the bar with new complete lines of trainer_log.jsonl; returns the new offset."""
    if log is None or not log.exists():
        return offset
    with log.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return offset
    for raw in data[: end + 1].splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        total, current = entry.get("total_steps"), entry.get("current_steps")
        if "loss" not in entry and "eval_loss" not in entry:
            continue  # evaluation-progress lines count eval batches, not training steps
        if total and bar.total != total:
            bar.total = total
        if current is not None and current >= bar.n:
            bar.update(current - bar.n)
        latest = getattr(bar, "_poemlib_latest", {})
        latest.update({k: f"{entry[k]:.4f}" for k in ("loss", "eval_loss") if entry.get(k) is not None})
        bar._poemlib_latest = latest  # keep the last train and eval loss side by side
        if latest:
            bar.set_postfix(latest, refresh=False)
        bar.refresh()
    return offset + end + 1


def launch(
    config: str | os.PathLike[str] | dict[str, Any],
    *,
    keep_best: bool = False,
    early_stopping_patience: int | None = None,
    nproc_per_node: int | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    progress: bool = True,
    timeout: float | None = None,
    **overrides: Any,
) -> TrainResult:
    """Run `llamafactory-cli train` on a config (+ overrides) and return its outputs; raise TrainingFailed on error.

    Relative paths in the config are taken against the project root, so `cwd` (default: the current directory)
    does not matter. `nproc_per_node` > 1 launches torchrun through LLaMA-Factory (FORCE_TORCHRUN=1).
    """
    cfg = resolve_config(config, overrides)
    if keep_best or early_stopping_patience:
        cfg = apply_keep_best(cfg, early_stopping_patience)
    ensure_local_model(cfg)
    output_dir = Path(cfg["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / TRAINER_LOG
    if cfg.get("overwrite_output_dir") and log_path.exists():
        log_path.unlink()  # LLaMA-Factory deletes it too; do it first so the bar never reads a previous run
    extra_env = dict(env or {})
    if nproc_per_node and nproc_per_node > 1:
        extra_env.update({"FORCE_TORCHRUN": "1", "NNODES": "1", "NPROC_PER_NODE": str(nproc_per_node)})
    stdout_path = output_dir / STDOUT_LOG
    args_path = output_dir / RESOLVED_ARGS
    start = time.monotonic()
    _run_cli("train", cfg, args_path, stdout_path, cwd=cwd, env=extra_env, timeout=timeout, progress_log=log_path, progress=progress)
    wall = time.monotonic() - start
    return collect_result(output_dir, config_path=args_path, stdout_path=stdout_path, wall_s=wall)
