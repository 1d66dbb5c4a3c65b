"""Running an evaluation: ask every backend about every photo, score, and write tables, plots and report.html."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poemlib.config import WORK_DIR, resolve_path
from poemlib.evaluate.items import DEFAULT_DATA, EvalItem, load_items
from poemlib.evaluate.judge import run_judge
from poemlib.evaluate.plots import make_plots
from poemlib.evaluate.report import write_report
from poemlib.evaluate.scoring import REPORT_OBJECTS, score_result, summarize
from poemlib.evaluate.variants import with_constrained
from poemlib.io import atomic_write, write_json
from poemlib.progress import progress_bar
from poemlib.schema import GenerationResult, PoemRequest

DEFAULT_OUT = WORK_DIR / "evaluate"


@dataclass
class EvaluationRun:
    """Everything an evaluation produced."""

    summary: Any  # pandas DataFrame, one row per backend (rule-based metrics)
    samples: Any  # pandas DataFrame, one row per backend × item
    out_dir: Path
    report: Path
    plots: list[Path]
    statuses: dict[str, Any]
    judge: Any = None  # pandas DataFrame of judge scores, or None
    judge_status: str = "skipped"
    files: dict[str, Path] = field(default_factory=dict)


def _ask(name: str, backend: Any, items: Sequence[EvalItem], groups: Mapping[str, list[int]], bar: Any) -> list[GenerationResult]:
    """One backend's answers for every item, one batched call per request group, in item order."""
    results: list[GenerationResult | None] = [None] * len(items)
    for key, indices in groups.items():
        answers = backend.generate([items[i].image for i in indices], PoemRequest.model_validate_json(key))
        if len(answers) != len(indices):
            raise RuntimeError(f"backend {name} returned {len(answers)} results for {len(indices)} images")
        for i, result in zip(indices, answers):
            result.backend = name
            results[i] = result
        bar.update(len(indices))
    return results  # type: ignore[return-value]


def run_backends(backends: Mapping[str, Any], items: Sequence[EvalItem], *, progress: bool | None = None) -> list[dict[str, Any]]:
    """Ask every backend about every item (items grouped by request so each group is one batched call)."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.request.model_dump_json(), []).append(index)
    rows: list[dict[str, Any]] = []
    for name, backend in backends.items():
        with progress_bar(len(items), desc=f"evaluate {name}", unit="photo", enabled=progress) as bar:
            results = _ask(name, backend, items, groups, bar)
        rows.extend(score_result(item, result) for item, result in zip(items, results))
    return rows


def _load(backends: Sequence[str] | str | Mapping[str, Any], profile: str, config: str | os.PathLike | None) -> Mapping[str, Any]:
    """Backend objects: given ones as they are, names loaded from the backends config."""
    if isinstance(backends, Mapping):
        return backends
    from poemlib.backends import load_backends

    return load_backends(backends, profile=profile, config=config)


def _write_tables(out_dir: Path, rows: Sequence[Mapping[str, Any]], samples: Any, summary: Any) -> dict[str, Path]:
    """results.jsonl (every row, private keys without their underscore), samples.csv and summary.csv."""
    public_rows = ({k.lstrip("_"): v for k, v in r.items() if k not in REPORT_OBJECTS} for r in rows)
    return {
        "results": atomic_write(out_dir / "results.jsonl", (json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in public_rows)),
        "samples": atomic_write(out_dir / "samples.csv", samples.drop(columns=["raw_text"]).to_csv(index=False)),
        "summary": atomic_write(out_dir / "summary.csv", summary.to_csv()),
    }


def evaluate(
    backends: Sequence[str] | Mapping[str, Any] = ("gemini", "base", "lora"),
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    profile: str = "offline",
    config: str | os.PathLike | None = None,
    limit: int | None = None,
    request: PoemRequest | None = None,
    judge: bool | None = None,
    progress: bool | None = None,
    constrain: bool = False,
) -> EvaluationRun:
    """Evaluate backends (names for load_backends, or ready Backend objects) and write tables, plots and report.html.

    judge: None runs the LLM judge when GEMINI_API_KEY is set, True asks for it (still skipped without a key),
    False never runs it. progress: None follows POEMLIB_PROGRESS (poemlib.progress). constrain: each Qwen backend
    is also asked under the 格律 constraint, as `base+格律` / `lora+格律` beside it (poemlib.evaluate.variants).
    """
    import pandas as pd

    out_dir = resolve_path(out, prefer_cwd=True) if out is not None else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    backends = _load(backends, profile, config)
    if constrain:
        backends = with_constrained(backends)
    statuses = {name: b.status() for name, b in backends.items()}
    items = load_items(data, limit=limit, request=request)
    rows = run_backends(backends, items, progress=progress)
    summary = summarize(rows, list(backends))
    summary.insert(0, "state", [statuses[name].state for name in summary.index])
    samples = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    files = _write_tables(out_dir, rows, samples, summary)

    judge_df, judge_status = run_judge(rows, items, out_dir, enabled=judge)
    if judge_df is not None:
        files["judge"] = atomic_write(out_dir / "judge.csv", judge_df.to_csv(index=False))
    plots = make_plots(summary, samples, out_dir / "plots")
    data_label = str(resolve_path(data, prefer_cwd=True)) if data is not None else str(DEFAULT_DATA)
    files["report"] = write_report(out_dir / "report.html", items, rows, summary, backends, statuses, plots,
                                   judge_df=judge_df, judge_status=judge_status, data_label=data_label)
    files["status"] = write_json(out_dir / "status.json", {
        "backends": {n: s.model_dump() for n, s in statuses.items()},
        "labels": {n: b.label for n, b in backends.items()},
        "data": str(data), "n_items": len(items), "judge": judge_status,
    }, indent=2)
    return EvaluationRun(summary=summary, samples=samples, out_dir=out_dir, report=files["report"], plots=plots,
                         statuses=statuses, judge=judge_df, judge_status=judge_status, files=files)
