"""The report as tables and as a figure with Chinese labels."""

from __future__ import annotations

import warnings

import pytest

from poemlib.clean import plot_report
from tests.clean.data import run_clean


def test_report_frames_and_plot(legacy, tmp_path) -> None:
    rep, _ = run_clean(legacy, tmp_path, dedupe="best")
    frames = rep.to_frames()
    for name in ("summary", "status", "types", "meter", "tokens", "duplicates", "malformed", "unfit", "chars_per_line"):
        assert name in frames
    assert frames["summary"].loc["distinct_images", "value"] == 7
    assert len(frames["duplicates"]) == 6
    assert frames["chars_per_line"].loc["五言绝句", "5"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_report(rep)
    assert len(fig.axes) == 4


def test_cjk_label_renders_without_missing_glyphs(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from poemlib.plotting import use_cjk_font

    name = use_cjk_font(quiet=True)
    if name is None:
        pytest.skip("no CJK font installed (Debian: apt-get install fonts-noto-cjk)")
    fig, ax = plt.subplots()
    ax.set_title("体裁分布 七言绝句 格律通过率")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(tmp_path / "cjk.png")
    assert not [w for w in caught if "missing from" in str(w.message)], [str(w.message) for w in caught]
    plt.close(fig)
