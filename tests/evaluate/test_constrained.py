"""`evaluate --constrain`: base+格律 and lora+格律 rows beside the unconstrained ones, in the summary, samples,
plots and report; every constrained poem passes 格律."""

from __future__ import annotations

from pathlib import Path

import pytest

from poemlib import evaluate as ev
from poemlib.backends import BackendStatus
from poemlib.schema import GenerationResult, PoemRequest
from tests.demo.helpers import make_random_lora, write_tiny_backends


class Recorder:
    """A backend that records the requests it is asked with and answers with an error result."""

    def __init__(self, name: str) -> None:
        self.name, self.label, self.requests = name, f"{name} label", []

    def status(self) -> BackendStatus:
        return BackendStatus(name=self.name, state="ready", ready=True)

    def generate(self, images, request: PoemRequest) -> list[GenerationResult]:
        self.requests.append(request)
        return [GenerationResult(backend=self.name, error_kind="empty") for _ in images]


def test_constrained_twins_follow_each_qwen_backend_and_ask_with_constrain() -> None:
    backends = {name: Recorder(name) for name in ("gemini", "base", "lora")}
    both = ev.with_constrained(backends)
    assert list(both) == ["gemini", "base", "base+格律", "lora", "lora+格律"]
    assert both["base"] is backends["base"] and both["base+格律"].label == "base label + 格律约束"
    assert both["lora+格律"].status().name == "lora+格律" and both["lora+格律"].status().ready
    both["base+格律"].generate(["photo"], PoemRequest(poem_type="七言绝句", temperature=0.5))
    both["base"].generate(["photo"], PoemRequest(poem_type="七言绝句"))
    asked = backends["base"].requests
    assert [r.constrain for r in asked] == [True, False]
    assert asked[0].poem_type == "七言绝句" and asked[0].temperature == 0.5
    assert [ev.is_constrained_name(n) for n in both] == [False, False, True, False, True]


@pytest.fixture(scope="module")
def adapter(tiny_qwen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter on the tiny model."""
    return make_random_lora(tiny_qwen_dir, tmp_path_factory.mktemp("lora") / "adapter")


def _config(tmp_path: Path, model_dir: Path, adapter: Path) -> Path:
    """A backends.yaml whose offline profile points at the tiny model and the adapter (cap far below the constraint's)."""
    return write_tiny_backends(tmp_path / "backends.yaml", model_dir, adapter, generation={"top_p": 1.0, "top_k": 0},
                               batch_size=8, max_new_tokens_cap=16)


@pytest.mark.slow
def test_evaluate_constrain_adds_rows_and_every_constrained_poem_passes(tiny_qwen_dir, adapter, photo_folder, tmp_path) -> None:
    import torch

    from poemlib.backends import clear_backends, load_backends
    from poemlib.backends.constraint import ConstraintEngines

    threads = torch.get_num_threads()
    clear_backends()
    try:
        loaded = load_backends(["base", "lora"], config=_config(tmp_path, tiny_qwen_dir, adapter))
        engine = loaded["base"].engine  # every constrained answer a poem, so 合律率 has something to judge
        engine.constraints = ConstraintEngines(engine.tokenizer, engine.constraints.logits_size, allow_unfit=False)
        run = ev.evaluate(loaded, data=photo_folder, out=tmp_path / "out", request=PoemRequest(poem_type="五言绝句"),
                          judge=False, constrain=True)
    finally:
        clear_backends()
        torch.set_num_threads(threads)
    summary, samples = run.summary, run.samples
    assert list(summary.index) == ["base", "base+格律", "lora", "lora+格律"]
    for name in ("base+格律", "lora+格律"):
        row = summary.loc[name]
        assert row["n_poems"] == 3 and row[ev.HELI_RATE] == 1.0 and row["type_adherence"] == 1.0
        assert (row["form_pass"], row["tone_pass"], row["rhyme_pass"]) == (1.0, 1.0, 1.0)
    assert summary.loc["base", "output_tokens"] <= 16  # the unconstrained rows keep the profile's cap
    assert samples.groupby("backend")["constrained"].all().to_dict() == {"base": False, "base+格律": True, "lora": False, "lora+格律": True}
    html = run.report.read_text(encoding="utf-8")
    assert "base (tiny) + 格律约束" in html and "lora (tiny) + 格律约束" in html
    assert html.count('data-check="constrained"') == 6  # one badge per constrained answer, none on the others
    assert "base+格律" in run.files["summary"].read_text(encoding="utf-8")


@pytest.mark.slow
def test_cli_evaluate_constrain(tiny_qwen_dir, adapter, photo_folder, tmp_path) -> None:
    from typer.testing import CliRunner

    from poemlib.backends import clear_backends
    from poemlib.cli import app

    out = tmp_path / "cli-out"
    clear_backends()
    try:
        result = CliRunner().invoke(app, ["evaluate", "--backends", "base", "--data", str(photo_folder), "--out", str(out),
                                          "--config", str(_config(tmp_path, tiny_qwen_dir, adapter)), "--limit", "1",
                                          "--poem-type", "七言绝句", "--constrain", "--no-judge"])
    finally:
        clear_backends()
    assert result.exit_code == 0, result.output
    assert "base+格律" in result.output
    import pandas as pd

    samples = pd.read_csv(out / "samples.csv")
    assert samples.set_index("backend")["constrained"].to_dict() == {"base": False, "base+格律": True}
