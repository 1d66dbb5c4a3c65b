"""`poemlib evaluate`: run the backends over the test split (or a folder of photos) and write tables, plots and report.html."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the evaluate command."""

    @app.command("evaluate")
    def evaluate_command(
        backends: str = typer.Option("gemini,base,lora", "--backends", help="comma-separated: gemini, base, lora"),
        data: Path = typer.Option(None, "--data", help="dataset dir from `poemlib transform` (its test split) or any folder of photos (default: work/dataset)"),
        out: Path = typer.Option(None, "--out", help="output folder (default: work/evaluate)"),
        profile: str = typer.Option("offline", "--profile", help="configs/backends.yaml profile: offline (replay, tiny models) or real"),
        config: Path = typer.Option(None, "--config", help="backends config (default: configs/backends.yaml)"),
        limit: int = typer.Option(None, "--limit", help="evaluate only the first N photos"),
        poem_type: str = typer.Option(None, "--poem-type", help="ask every photo for this 体裁 (replaces the dataset's requests)"),
        cipai: str = typer.Option(None, "--cipai", help="ask for this 词牌 (implies 词)"),
        mood: str = typer.Option(None, "--mood", help="ask for this mood / theme"),
        temperature: float = typer.Option(None, "--temperature", help="0 = greedy (with --poem-type/--cipai/--mood/--seed)"),
        seed: int = typer.Option(None, "--seed", help="sampling seed"),
        judge: bool = typer.Option(None, "--judge/--no-judge", help="LLM judge with Gemini (default: only when GEMINI_API_KEY is set)"),
        constrain: bool = typer.Option(False, "--constrain", help="also ask base and lora under the 格律 constraint: rows base+格律, lora+格律"),
    ) -> None:
        """Evaluate backends: validity, 格律, BLEU-4/ROUGE-L, diversity, length; an HTML report with the poems side by side."""
        from poemlib.evaluate import evaluate
        from poemlib.schema import PoemRequest

        request = None
        if any(v is not None for v in (poem_type, cipai, mood, temperature, seed)):
            fields = {"poem_type": poem_type or ("词" if cipai else None), "cipai": cipai, "mood": mood, "seed": seed}
            if temperature is not None:
                fields["temperature"] = temperature
            try:
                request = PoemRequest(**{k: v for k, v in fields.items() if v is not None})
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
        names = [b.strip() for b in backends.split(",") if b.strip()]
        try:
            run = evaluate(names, data=data, out=out, profile=profile, config=config, limit=limit, request=request,
                           judge=judge, progress=True, constrain=constrain)
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        import pandas as pd

        for name, status in run.statuses.items():
            typer.echo(f"{name:7s} {status.state}: {status.detail}")
        with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format", "{:.3f}".format):
            typer.echo(run.summary.T.to_string())
        typer.echo(f"judge: {run.judge_status}")
        typer.echo(f"report: {run.report}")
