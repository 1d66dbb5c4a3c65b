"""`poemlib annotate`: offline runs and exit codes."""

from __future__ import annotations

from poemlib import annotate as ann
from poemlib.gemini import keys
from tests.annotate.helpers import GeminiServer


def test_cli_offline_run_and_exit_codes(tmp_path, few_photos, monkeypatch) -> None:
    from typer.testing import CliRunner

    from poemlib.cli import app

    runner = CliRunner()
    store = tmp_path / "store.jsonl"
    result = runner.invoke(app, ["annotate", str(few_photos), "--out", str(store), "--offline", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "OFFLINE REPLAY" in result.output and len(ann.load_store(store)) == 4
    result = runner.invoke(app, ["annotate", str(few_photos), "--out", str(tmp_path / "b.jsonl"), "--offline", "--batch", "--no-progress"])
    assert result.exit_code == 0 and "batch-collect" in result.output and len(ann.load_store(tmp_path / "b.jsonl")) == 4
    # no key, no base URL: exit 2 with the offline recipe
    monkeypatch.setattr(keys, "PROJECT_ROOT", tmp_path / "empty")
    result = runner.invoke(app, ["annotate", str(few_photos), "--out", str(tmp_path / "other.jsonl")])
    assert result.exit_code == 2 and "--offline" in result.output
    # a rejected key: exit 3, the key never printed
    with GeminiServer(mode="replay", valid_keys={"right"}) as server:
        monkeypatch.setenv("GEMINI_API_KEY", "sk-wrong-secret")
        result = runner.invoke(app, ["annotate", str(few_photos), "--out", str(tmp_path / "k.jsonl"), "--base-url", server.base_url, "--no-progress"])
        assert result.exit_code == 3 and "API key" in result.output and "sk-wrong-secret" not in result.output
