"""`poemlib clean` on the command line."""

from __future__ import annotations

import json

from tests.clean.data import POLICY


def test_cli_runs_clean(legacy, tmp_path) -> None:
    from typer.testing import CliRunner

    from poemlib.cli import app

    out, report = tmp_path / "cli" / "clean.jsonl", tmp_path / "cli" / "report.json"
    policy = tmp_path / "policy.yaml"
    policy.write_text("".join(f"{k}: {str(v).lower()}\n" for k, v in POLICY.items()), encoding="utf-8")
    # A folder is expanded to its *.json / *.jsonl files in name order: shard_a, shard_b, shard_c.
    args = ["clean", str(legacy["a"].parent), "--out", str(out), "--report", str(report),
            "--images-root", str(legacy["root"]), "--policy", str(policy), "--dedupe", "best"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "distinct images   7" in result.output
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["counts"]["records_read"] == 10 and saved["counts"]["eligible"] == 4
    assert "records_read" in saved["definitions"]
    strict = CliRunner().invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1  # one malformed record, one missing image
    assert f"malformed: {legacy['a']} [4]: no image_path" in strict.output
    assert "1 image file(s) not found" in strict.output
    wrong = CliRunner().invoke(app, [*args[:-1], "newest"])
    assert wrong.exit_code != 0 and "latest, first, best" in wrong.output


def test_cli_relative_inputs_keep_their_names(legacy, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from poemlib.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["clean", "shards/shard_b.json", "--out", "cli/clean.jsonl", "--report", "cli/report.json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cli" / "report.json").read_text(encoding="utf-8"))
    assert saved["settings"]["inputs"] == ["shards/shard_b.json"]
    sources = sorted(json.loads(line)["source"] for line in (tmp_path / "cli" / "clean.jsonl").read_text(encoding="utf-8").splitlines())
    assert sources == ["shards/shard_b.json#1", "shards/shard_b.json#2", "shards/shard_b.json#3"]  # #0 fails its form
    missing = CliRunner().invoke(app, ["clean", "shards/nope.json", "--out", "cli/x.jsonl", "--report", "cli/x.json"])
    assert missing.exit_code == 2 and "input not found: shards/nope.json" in missing.output
