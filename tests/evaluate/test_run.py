"""End to end: load photos, run the offline backends, write the tables, plots and report; the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from poemlib import evaluate as ev
from poemlib.config import SAMPLE_DIR
from poemlib.schema import PoemRequest
from tests.demo.helpers import write_tiny_backends


def test_evaluate_end_to_end_offline(tiny_qwen_dir, photo_folder, tmp_path) -> None:
    from poemlib.backends import clear_backends

    config = write_tiny_backends(tmp_path / "backends.yaml", tiny_qwen_dir, tmp_path / "no-adapter", batch_size=8, max_new_tokens_cap=16)
    import torch

    threads = torch.get_num_threads()
    clear_backends()
    try:
        run = ev.evaluate(["gemini", "base", "lora"], data=photo_folder, out=tmp_path / "out", config=config, judge=None)
    finally:
        clear_backends()
        torch.set_num_threads(threads)
    summary = run.summary
    assert list(summary.index) == ["gemini", "base", "lora"]
    assert set(ev.RULE_METRICS) <= set(summary.columns)
    # the replay server answers each known photo's first request with our flawed draft of its reference (a character
    # or two changed: close to the reference, not equal; the cat's 孤平 fails 平仄, the dahlia's 出韵 fails rhyme)
    gem = summary.loc["gemini"]
    assert gem["json_parse_rate"] == 1.0 and gem["schema_valid_rate"] == 1.0
    assert 0.8 < gem["bleu4"] < 1.0 and 0.9 < gem["rouge_l"] < 1.0
    assert (gem["form_pass"], gem["tone_pass"], gem["rhyme_pass"]) == (1.0, 0.5, 0.5)
    assert gem["unfit_rate"] == pytest.approx(1 / 3)  # handwritten equations are unfit in the references
    # lora has no adapter: every answer is an error result, and the run still completes
    assert summary.loc["lora"]["schema_valid_rate"] == 0.0
    assert (run.samples.loc[run.samples.backend == "lora", "error_kind"] == "generation_error").all()
    assert len(run.samples) == 9
    assert sorted(run.samples.loc[run.samples.backend == "gemini", "image"]) == sorted(["cat_chelsea.jpg", "dahlia_flower.jpg", "handwritten_equations.jpg"])
    assert run.statuses["lora"].state == "adapter missing"
    assert run.judge is None and run.judge_status.startswith("skipped")

    html = run.report.read_text(encoding="utf-8")
    assert run.report.name == "report.html"
    assert html.count('class="item"') == 3
    assert html.count("data:image/jpeg;base64,") == 3 and html.count("data:image/png;base64,") == len(run.plots)
    assert "Noto Serif CJK SC" in html and "Songti SC" in html
    assert "Gemini (replay)" in html and "base (tiny)" in html and "adapter missing" in html
    assert [p.name for p in run.plots] == ["rates.png", "text_metrics.png", "length.png", "latency.png"]
    for path in run.plots:
        assert path.exists() and path.stat().st_size > 1000
    for key in ("results", "samples", "summary", "status"):
        assert run.files[key].exists()
    results = [json.loads(line) for line in run.files["results"].read_text(encoding="utf-8").splitlines()]
    assert len(results) == 9 and {"meter", "violations", "raw_text"} <= set(results[0]) and "report" not in results[0]
    status = json.loads(run.files["status"].read_text(encoding="utf-8"))
    assert status["n_items"] == 3 and status["backends"]["lora"]["state"] == "adapter missing"


def test_load_items_from_a_dataset_directory(tmp_path, poem) -> None:
    data = tmp_path / "dataset"
    (data / "images").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "cat_chelsea.jpg", data / "images" / "abc.jpg")
    ref = {"image_sha256": "a" * 64, "image": "images/abc.jpg", "source_paths": ["pets/cat_chelsea.jpg"],
           "request": {"poem_type": "七言绝句", "mood": "闲适"}, "annotation": poem.model_dump(mode="json")}
    (data / "test_refs.jsonl").write_text(json.dumps(ref, ensure_ascii=False) + "\n", encoding="utf-8")
    items = ev.load_items(data)
    assert len(items) == 1
    assert items[0].image == data / "images" / "abc.jpg" and items[0].name == "cat_chelsea.jpg"
    assert items[0].sha256 == "a" * 64
    assert items[0].request == PoemRequest(poem_type="七言绝句", mood="闲适")
    assert items[0].reference == poem
    forced = ev.load_items(data, request=PoemRequest(poem_type="词"))
    assert forced[0].request.poem_type == "词"
    with pytest.raises(FileNotFoundError, match="nothing-here: neither a dataset directory"):
        ev.load_items(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no photos to evaluate"):
        ev.load_items(tmp_path / "empty")


def test_load_items_from_a_folder_with_references(photo_folder) -> None:
    from poemlib.samples import reference_by_name

    items = ev.load_items(photo_folder, limit=2)
    assert [i.name for i in items] == ["cat_chelsea.jpg", "dahlia_flower.jpg"]
    assert items[0].reference == reference_by_name()["cat_chelsea.jpg"]
    assert items[0].request == PoemRequest()


def test_cli_evaluate_with_the_replay_backend(photo_folder, tmp_path) -> None:
    from typer.testing import CliRunner

    from poemlib.cli import app

    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["evaluate", "--backends", "gemini", "--data", str(photo_folder), "--out", str(out),
                                      "--poem-type", "七言绝句", "--no-judge"])
    assert result.exit_code == 0, result.output
    assert "json_parse_rate" in result.output and "judge: skipped: disabled" in result.output
    assert (out / "report.html").exists() and (out / "summary.csv").exists()
    samples = (out / "samples.csv").read_text(encoding="utf-8")
    assert samples.count("七言绝句") >= 3  # every photo was asked for a 七言绝句
    bad = CliRunner().invoke(app, ["evaluate", "--backends", "gemini", "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code == 2 and "neither a dataset directory" in bad.output
