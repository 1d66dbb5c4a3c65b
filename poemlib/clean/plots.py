"""The clean report as a 2×2 figure with Chinese labels: status, 体裁, token counts, 格律 pass rates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poemlib.schema import POEM_TYPES

if TYPE_CHECKING:
    from poemlib.clean.report import CleanReport

_STATUS_NAMES = {"ok": "成功", "unfit": "不宜作诗", "failed": "失败"}
_CHECK_NAMES = {"form": "体式", "tone": "平仄", "rhyme": "押韵"}


def _paired_bars(ax: Any, names: list[str], labels: list[str], series: tuple[tuple[str, dict[str, int]], ...]) -> None:
    """Two bar series side by side over `names`, each bar labelled with its value."""
    import numpy as np

    x = np.arange(len(names))
    for offset, (label, data) in zip((-0.2, 0.2), series):
        bars = ax.bar(x + offset, [data.get(n, 0) for n in names], width=0.4, label=label)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, labels)
    ax.legend()


def _plot_tokens(ax: Any, report: CleanReport) -> None:
    """Histogram of token counts over all records read, with the median."""
    import numpy as np

    stats = report.tokens_read
    if stats.hist_counts:
        edges = np.asarray(stats.hist_edges)
        ax.bar(edges[:-1], stats.hist_counts, width=np.diff(edges), align="edge", edgecolor="white")
        if stats.p50 is not None:
            ax.axvline(stats.p50, color="black", linestyle="--", label=f"中位数 {stats.p50:.0f}")
            ax.legend()
    else:
        ax.text(0.5, 0.5, "无 token 统计", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"Token 数分布（读取的全部记录，n={stats.n}）")
    ax.set_xlabel("total_token_count")
    ax.set_ylabel("记录数")


def _plot_meter(ax: Any, report: CleanReport) -> None:
    """Form / tone / rhyme pass rates per poem type ('–' where nothing was checkable)."""
    import numpy as np

    types = list(report.meter)
    x = np.arange(len(types))
    width = 0.8 / len(_CHECK_NAMES)
    for i, (check, label) in enumerate(_CHECK_NAMES.items()):
        rates = [report.meter[t].rate(check) for t in types]
        values = [r * 100 if r is not None else 0 for r in rates]
        bars = ax.bar(x + (i - 1) * width, values, width=width, label=label)
        ax.bar_label(bars, labels=[f"{v:.0f}" if r is not None else "–" for v, r in zip(values, rates)], fontsize=7)
    ax.set_xticks(x, types)
    ax.set_ylim(0, 125)
    ax.set_ylabel("通过率 (%)")
    ax.set_title("格律通过率（去重后的诗）")
    if types:
        ax.legend(loc="upper center", ncol=3)
    else:
        ax.text(0.5, 0.5, "无可检查的诗", ha="center", va="center", transform=ax.transAxes)


def plot_report(report: CleanReport) -> Any:
    """A 2×2 matplotlib Figure: status, 体裁 distribution, token histogram, 格律 pass rates (Chinese labels)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from poemlib.plotting import use_cjk_font

    use_cjk_font()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax_status, ax_types, ax_tokens, ax_meter = axes.flat
    statuses = list(_STATUS_NAMES)
    _paired_bars(ax_status, statuses, list(_STATUS_NAMES.values()), (("去重前", report.status_read), ("去重后", report.status_after_dedupe)))
    ax_status.set_title("标注状态")
    ax_status.set_ylabel("记录数")
    types = list(POEM_TYPES)
    _paired_bars(ax_types, types, types, (("去重后", report.types_after_dedupe), ("可用于训练", report.types_eligible)))
    ax_types.set_title("体裁分布")
    ax_types.set_ylabel("首数")
    _plot_tokens(ax_tokens, report)
    _plot_meter(ax_meter, report)
    for ax in (ax_status, ax_types, ax_tokens):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
