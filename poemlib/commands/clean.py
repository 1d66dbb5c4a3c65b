"""`poemlib clean`: merge stores and legacy shards, dedupe, meter-check, write clean JSONL and a count report."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the clean command."""

    @app.command("clean")
    def clean_command(
        inputs: list[Path] = typer.Argument(..., help="JSONL stores, legacy JSON shards, or folders of them (*.json, *.jsonl)"),
        out: Path = typer.Option(..., "--out", help="clean JSONL: the records eligible for training"),
        report: Path = typer.Option(..., "--report", help="count report (JSON)"),
        images_root: Path = typer.Option(None, "--images-root", help="folder the image paths are relative to (legacy: the one holding Train/ and Val/)"),
        dedupe: str = typer.Option("latest", "--dedupe", help="which record of a duplicated image to keep: latest, first or best (most meter checks passed)"),
        policy: Path = typer.Option(None, "--policy", help="eligibility policy YAML (default: configs/clean.yaml)"),
        rejected: Path = typer.Option(None, "--rejected", help="where the other records go, with reasons (default: rejected.jsonl beside --out)"),
        strict: bool = typer.Option(False, "--strict", help="exit 1 when a record is malformed, an input unreadable or an image missing"),
        meter: str = typer.Option(None, "--meter", help="strict: drop poems failing form, 平仄 or rhyme; flag: keep 平仄/rhyme failures, flagged (default: the policy file)"),
        workers: int = typer.Option(None, "--workers", help="processes sharing the meter checks, this one included (default: one more than the CPUs usable, at most 8, for inputs of 4 MB or more on more than one CPU, else 1)"),
    ) -> None:
        """Merge any mix of annotation stores and legacy shards into clean JSONL plus a count report."""
        from poemlib.clean import DEDUPE_POLICIES, clean
        from poemlib.clean.policy import METER_PRESETS

        if dedupe not in DEDUPE_POLICIES:
            raise typer.BadParameter(f"must be one of {', '.join(DEDUPE_POLICIES)}", param_hint="--dedupe")
        if meter is not None and meter not in METER_PRESETS:
            raise typer.BadParameter(f"must be one of {', '.join(METER_PRESETS)}", param_hint="--meter")
        try:
            rep = clean(inputs, out, report, images_root=images_root, dedupe=dedupe, policy=policy, rejected=rejected, workers=workers, meter=meter)
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        c = rep.counts
        lines = [
            f"inputs            {c.inputs} files ({c.inputs_unreadable} unreadable)",
            f"records read      {c.records_read}  (malformed, skipped: {c.malformed}; superseded in a store: {c.superseded_in_store})",
            f"distinct images   {c.distinct_images}  (duplicate groups {c.duplicate_groups}, surplus records {c.surplus_records})",
            f"after dedupe      ok {c.ok}, unfit {c.unfit}, failed {c.failed}   (read: ok {c.ok_read}, unfit {c.unfit_read}, failed {c.failed_read})",
            f"images            found {c.images_found}, missing {c.images_missing}, unchecked {c.images_unchecked}",
            f"eligible          {c.eligible} -> {out}",
            f"rejected          {c.written_rejected} -> {rep.outputs['rejected']}  ({', '.join(f'{k} {v}' for k, v in rep.rejected_reasons.items()) or 'none'})",
            f"report            {report}",
        ]
        if rep.meter_dropped:
            dropped = "; ".join(f"{t}: " + ", ".join(f"{k} {v}" for k, v in rules.items()) for t, rules in rep.meter_dropped.items())
            lines.insert(-1, f"meter dropped     {dropped}")
        typer.echo("\n".join(lines))
        for summary in rep.inputs:
            if summary.error:
                typer.echo(f"warning: {summary.path}: {summary.error}", err=True)
        for bad in rep.malformed[:20]:
            where = f"[{bad.index}]" if bad.index is not None else f"line {bad.line}"
            typer.echo(f"malformed: {bad.file} {where}: {bad.reason}", err=True)
        if len(rep.malformed) > 20:
            typer.echo(f"malformed: … {len(rep.malformed) - 20} more in {report}", err=True)
        if c.images_missing:
            typer.echo(f"warning: {c.images_missing} image file(s) not found under {images_root} (listed in the report)", err=True)
        broken = [name for name, holds in rep.invariants.items() if not holds]
        if broken:
            typer.echo(f"error: count invariants do not hold: {broken}", err=True)
            raise typer.Exit(1)
        if strict and (c.malformed or c.inputs_unreadable or c.images_missing):
            raise typer.Exit(1)
