"""`poemlib annotate IMAGES_DIR --out STORE.jsonl`: annotate photos with Gemini into an append-only store."""

from __future__ import annotations

from pathlib import Path

import typer

# Exit codes: 0 the run proceeded (individual images may have failed: see the summary and the store);
# 2 it could not start (no key, bad config or folder); 3 the API key was rejected; 4 stopped because every request failed.
EXIT_CONFIG, EXIT_AUTH, EXIT_ABORTED = 2, 3, 4


def register(app: typer.Typer) -> None:
    """Add the annotate command."""

    @app.command("annotate")
    def annotate_cmd(
        images_dir: Path = typer.Argument(..., help="folder of photos (searched recursively; never modified)"),
        out: Path = typer.Option(..., "--out", help="the JSONL store (created or appended to)"),
        config: str = typer.Option("annotate", "--config", help="config name in configs/ or a YAML path"),
        concurrency: int = typer.Option(None, "--concurrency", min=1, help="requests in flight (default: config)"),
        rpm: int = typer.Option(None, "--rpm", min=1, help="max HTTP requests in any 60 s window (default: config)"),
        base_url: str = typer.Option(None, "--base-url", help="a Gemini-compatible endpoint, e.g. the loopback server"),
        limit: int = typer.Option(None, "--limit", min=0, help="annotate at most N images this run"),
        batch: bool = typer.Option(False, "--batch", help="Batch API: submit a job, or collect the pending one (half price)"),
        wait: bool = typer.Option(False, "--wait", help="with --batch: poll until the jobs finish and collect them"),
        cancel_batch: bool = typer.Option(False, "--cancel-batch", help="cancel the store's pending batch jobs"),
        offline: bool = typer.Option(False, "--offline", help="start a loopback replay server in-process (recorded answers, not Gemini)"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
        revise: int = typer.Option(None, "--revise", min=0, help="revision rounds for a poem failing 格律 (default: config revise_rounds; 0: off)"),
    ) -> None:
        """Annotate every photo under IMAGES_DIR that has no final record in the store; re-runs resume.

        The API key comes from GEMINI_API_KEY or GOOGLE_API_KEY (or an untracked .env at the project root);
        it is never printed. Individual failures are recorded in the store and do not change the exit code.
        """
        from poemlib import annotate as ann

        server = None
        try:
            if offline:
                if base_url:
                    typer.echo("--offline and --base-url are exclusive", err=True)
                    raise typer.Exit(EXIT_CONFIG)
                from poemlib.offline.gemini import GeminiServer

                server = GeminiServer(mode="replay").start()
                base_url = server.base_url
                typer.echo(f"OFFLINE REPLAY: answers come from the loopback server at {base_url}, not from Gemini.", err=True)
                if batch and not wait:
                    wait = True  # the in-process server (and its batch jobs) ends with this command
                    typer.echo("--offline --batch: waiting for the job here, since the in-process server ends with this command.", err=True)
            if not images_dir.is_dir() and not (batch and ann.batch_state_path(out).exists()) and not cancel_batch:
                typer.echo(f"images folder not found: {images_dir}", err=True)
                raise typer.Exit(EXIT_CONFIG)
            if cancel_batch:
                summary = ann.cancel_batch(out, config=config, base_url=base_url)
            else:
                summary = ann.annotate_folder(
                    images_dir, out, config=config, concurrency=concurrency, rpm=rpm, base_url=base_url, limit=limit, progress=progress, batch=batch, wait=wait,
                    revise=revise,
                )
        except ann.AnnotateAuthError as exc:
            _report_abort(exc)
            raise typer.Exit(EXIT_AUTH) from exc
        except ann.AnnotateConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_CONFIG) from exc
        except ann.AnnotateError as exc:
            _report_abort(exc)
            raise typer.Exit(EXIT_ABORTED) from exc
        finally:
            if server is not None:
                server.stop()
        typer.echo(summary.text())


def _report_abort(exc: Exception) -> None:
    """The reason, then what was done before the stop."""
    typer.echo(f"ERROR: {exc}", err=True)
    summary = getattr(exc, "summary", None)
    if summary is not None:
        typer.echo(summary.text(), err=True)
