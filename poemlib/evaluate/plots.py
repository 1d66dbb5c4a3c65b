"""Evaluation plots: rates and text metrics per backend (grouped bars), poem length (box plot), latency."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from poemlib.evaluate.variants import is_constrained_name

log = logging.getLogger(__name__)

RATE_COLUMNS = ["json_parse_rate", "schema_valid_rate", "unfit_rate", "type_adherence", "form_pass", "tone_pass", "rhyme_pass"]
TEXT_COLUMNS = ["bleu4", "rouge_l", "distinct_1", "distinct_2", "rep2", "repeated_lines"]


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with a CJK font when one is installed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    try:
        from poemlib.plotting import use_cjk_font

        use_cjk_font(quiet=True)
    except Exception as exc:  # noqa: BLE001 - no CJK font: the labels are ASCII anyway
        log.debug("no CJK font for plots: %s", exc)
    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write a figure as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(plt: Any, summary: Any, columns: list[str], title: str, path: Path, ylim: tuple[float, float] = (0, 1.05)) -> Path:
    """Grouped bars: one group per metric, one bar per backend."""
    cols = [c for c in columns if c in summary]
    data = summary[cols].astype(float).fillna(0.0)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cols) * max(1, len(data)) / 2 + 3), 3.8))
    width = 0.8 / max(1, len(data))
    for i, (name, row) in enumerate(data.iterrows()):
        # a constrained twin (base+格律) is hatched, so each pair reads as one model with and without the constraint
        ax.bar([j + i * width for j in range(len(cols))], row.values, width=width, label=name,
               hatch="//" if is_constrained_name(str(name)) else None)
    ax.set_xticks([j + width * (len(data) - 1) / 2 for j in range(len(cols))])
    ax.set_xticklabels(cols, rotation=20, ha="right")
    ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def _lengths(plt: Any, summary: Any, samples: Any, path: Path) -> Path:
    """Box plot of characters per poem, one box per backend."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(summary.index)
    data = [samples.loc[samples["backend"] == n, "n_chars"].dropna().astype(float).tolist() for n in names]
    if any(data):
        ax.boxplot([d or [0.0] for d in data], tick_labels=names)
    ax.set_ylabel("characters per poem")
    ax.set_title("Poem length")
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def _latency(plt: Any, summary: Any, path: Path) -> Path:
    """Seconds per photo, one bar per backend."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lat = summary["latency_s"].astype(float).fillna(0.0)
    ax.bar(list(lat.index), lat.values, color="#7a8fb3")
    ax.set_ylabel("seconds per photo (batch time shared)")
    ax.set_title("Latency")
    return _save(plt, fig, path)


def make_plots(summary: Any, samples: Any, plot_dir: Path) -> list[Path]:
    """Bar charts of the rates and text metrics per backend and a box plot of poem lengths; PNG files."""
    plt = _pyplot()
    plot_dir.mkdir(parents=True, exist_ok=True)
    return [
        _bars(plt, summary, RATE_COLUMNS, "Validity and meter pass rates", plot_dir / "rates.png"),
        _bars(plt, summary, TEXT_COLUMNS, "Similarity to references, diversity and repetition", plot_dir / "text_metrics.png"),
        _lengths(plt, summary, samples, plot_dir / "length.png"),
        _latency(plt, summary, plot_dir / "latency.png"),
    ]
