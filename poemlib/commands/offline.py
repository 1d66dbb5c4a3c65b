"""`poemlib offline …`: build the tiny Qwen stand-in and serve the loopback Gemini server."""

from __future__ import annotations

from pathlib import Path

import typer

offline_app = typer.Typer(help="Offline stand-ins: tiny Qwen2.5-VL and a loopback Gemini REST server.", no_args_is_help=True)


@offline_app.command("build-tiny-qwen")
def build_tiny_qwen_cmd(
    out: Path = typer.Argument(..., help="directory to write the model, tokenizer and processor to"),
    seed: int = typer.Option(0, help="weights seed: same seed, byte-identical weights"),
) -> None:
    """Build the tiny randomly initialised Qwen2.5-VL (real architecture) into OUT."""
    from poemlib.offline.tiny_qwen import build_tiny_qwen

    typer.echo(str(build_tiny_qwen(out, seed=seed)))


@offline_app.command("serve-gemini")
def serve_gemini_cmd(
    port: int = typer.Option(8765, help="loopback port"),
    mode: str = typer.Option("replay", help="replay | faults"),
    fault_rate: float = typer.Option(0.0, help="probability that a request gets a fault (faults mode)"),
    faults: str = typer.Option("429,500,503,non_json,safety,max_tokens,blocked,slow", help="comma-separated fault kinds to draw from"),
    latency: float = typer.Option(0.0, help="seconds added to every response"),
    seed: int = typer.Option(0, help="fault draw seed"),
) -> None:
    """Serve the Gemini REST protocol on 127.0.0.1 until interrupted."""
    from poemlib.offline.gemini import serve_forever

    serve_forever(port=port, mode=mode, fault_rate=fault_rate, faults=faults.split(","), latency_s=latency, seed=seed)


def register(app: typer.Typer) -> None:
    """Add the offline sub-app."""
    app.add_typer(offline_app, name="offline")
