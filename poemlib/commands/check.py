"""`poemlib check`: the 格律 report of one poem, or pass rates over an annotation file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer


def _read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """JSON objects of a JSONL file, tolerating (and counting) lines that are not JSON objects."""
    records, bad = [], 0
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(obj, dict):
                records.append(obj)
            else:
                bad += 1
    return records, bad


def _echo_json(payload: dict[str, Any]) -> None:
    """Print JSON with Chinese kept readable."""
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def register(app: typer.Typer) -> None:
    """Add the check command."""

    @app.command("check")
    def check(
        text: str = typer.Argument(None, help="the poem; '-' reads it from stdin"),
        poem_type: str = typer.Option(None, "--type", help="五言绝句, 七言绝句, 五言律诗, 七言律诗 or 词"),
        title: str = typer.Option(None, "--title", help="the title; for 词 it names the 词牌: 水调歌头 or 水调歌头·明月几时有 (required for 词)"),
        mode: str = typer.Option("pingshui", "--mode", help="pingshui (平水韵) or xinyun (中华新韵)"),
        jsonl: Path = typer.Option(None, "--jsonl", exists=True, dir_okay=False, help="check every record of an annotation JSONL file"),
    ) -> None:
        """Check a poem's form, 平仄 and rhyme (JSON report), or summarise pass rates per poem type of a JSONL file."""
        from poemlib import meter

        if mode not in ("pingshui", "xinyun"):
            raise typer.BadParameter(f"unknown mode {mode!r}; expected pingshui or xinyun", param_hint="--mode")
        if jsonl is not None:
            if text is not None:
                raise typer.BadParameter("give either TEXT or --jsonl, not both")
            records, bad = _read_records(jsonl)
            reports, skipped = meter.check_records(records, mode=mode)
            if bad:
                skipped["invalid"] += bad
            summary = {"file": str(jsonl), "mode": mode, "records": len(records) + bad, "checked": len(reports), "skipped": dict(skipped)}
            summary.update(meter.summarise(reports))
            _echo_json(summary)
            return
        if text is None:
            raise typer.BadParameter("give the poem TEXT ('-' for stdin) or --jsonl FILE")
        if poem_type is None:
            raise typer.BadParameter("--type is required when checking one poem", param_hint="--type")
        if text == "-":
            text = sys.stdin.read()
        try:
            ptype = meter.normalise_poem_type(poem_type)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--type") from exc
        if ptype == "词":
            _require_cipai(title)
        report = meter.check(ptype, text, title=title, mode=mode)
        _echo_json(report.model_dump(mode="json"))


def _require_cipai(title: str | None) -> None:
    """A 词 is checked against its 词牌: the title must name a known one ('水调歌头' or '水调歌头·明月几时有')."""
    from poemlib.meter.cipai import closest_names, parse_cipai, title_head

    if not title:
        raise typer.BadParameter("a 词 needs --title naming its 词牌 (e.g. 水调歌头 or 水调歌头·明月几时有)", param_hint="--title")
    if parse_cipai(title) is None:
        head = title_head(title) or title
        near = "、".join(closest_names(head)) or "none close"
        raise typer.BadParameter(f"unknown 词牌 {head!r}; closest known: {near}", param_hint="--title")
