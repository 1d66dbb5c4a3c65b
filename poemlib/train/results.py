"""What a training run left behind: the outcome (adapter, metrics, best checkpoint), the loss log and its plot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

TRAINER_LOG = "trainer_log.jsonl"
STDOUT_LOG = "train_stdout.log"
RESOLVED_ARGS = "poemlib_train_args.yaml"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class TrainResult(BaseModel):
    """Where a training run put things and how it ended."""

    output_dir: Path
    adapter_dir: Path | None = Field(None, description="output_dir when it holds adapter_config.json + adapter_model.safetensors")
    metrics: dict[str, Any] = Field(default_factory=dict, description="all_results.json (train_* and eval_* metrics)")
    log_path: Path = Field(description="LLaMA-Factory's trainer_log.jsonl")
    stdout_path: Path
    config_path: Path = Field(description="the resolved YAML that was run")
    best_checkpoint: Path | None = None
    best_metric: float | None = None
    wall_s: float = 0.0


def collect_result(output_dir: str | os.PathLike[str], *, config_path: Path | None = None, stdout_path: Path | None = None, wall_s: float = 0.0) -> TrainResult:
    """TrainResult of a finished run directory (metrics, adapter, best checkpoint)."""
    output_dir = Path(output_dir)
    metrics: dict[str, Any] = {}
    for name in ("train_results.json", "eval_results.json", "all_results.json"):
        path = output_dir / name
        if path.exists():
            metrics.update(json.loads(path.read_text(encoding="utf-8")))
    best_checkpoint = best_metric = None
    state_path = output_dir / "trainer_state.json"
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("best_model_checkpoint"):
            best_checkpoint = Path(state["best_model_checkpoint"])
            if not best_checkpoint.is_absolute():
                best_checkpoint = (output_dir / best_checkpoint.name).resolve()
        best_metric = state.get("best_metric")
    adapter = output_dir if all((output_dir / f).exists() for f in ADAPTER_FILES) else None
    return TrainResult(
        output_dir=output_dir,
        adapter_dir=adapter,
        metrics=metrics,
        log_path=output_dir / TRAINER_LOG,
        stdout_path=stdout_path or output_dir / STDOUT_LOG,
        config_path=config_path or output_dir / RESOLVED_ARGS,
        best_checkpoint=best_checkpoint,
        best_metric=best_metric,
        wall_s=wall_s,
    )


def read_trainer_log(source: str | os.PathLike[str]) -> Any:
    """trainer_log.jsonl (or the run directory holding it) as a DataFrame with one row per logged step / eval."""
    import pandas as pd

    path = Path(source)
    if path.is_dir():
        path = path / TRAINER_LOG
    rows = []
    if path.exists():
        for raw in path.read_text(encoding="utf-8").splitlines():
            raw = raw.strip()
            if raw:
                try:
                    rows.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue  # a line being written
    frame = pd.DataFrame(rows)
    if "loss" not in frame and "eval_loss" not in frame:
        return frame.iloc[0:0]
    keep = frame[[c for c in ("loss", "eval_loss") if c in frame]].notna().any(axis=1)
    return frame[keep].reset_index(drop=True)


def plot_loss(source: Any, ax: Any = None, title: str | None = None, save: str | os.PathLike[str] | None = None) -> Any:
    """Training loss and eval loss against the step, from a run dir, a trainer_log.jsonl, a TrainResult or a DataFrame.

    With `save` the figure is also written there as PNG (notebooks display that file: it shows under any backend).
    """
    import matplotlib.pyplot as plt

    if isinstance(source, TrainResult):
        source = source.log_path
    frame = source if hasattr(source, "columns") else read_trainer_log(source)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    if "loss" in frame:
        train = frame[frame["loss"].notna()]
        ax.plot(train["current_steps"], train["loss"], marker=".", label="train loss")
    if "eval_loss" in frame:
        evals = frame[frame["eval_loss"].notna()]
        ax.plot(evals["current_steps"], evals["eval_loss"], marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "LoRA training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=110)
    return fig
