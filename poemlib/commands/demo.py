"""`poemlib demo`: serve notebooks/06_demo.ipynb as a standalone page with Voilà on localhost."""

from __future__ import annotations

import os
from pathlib import Path

import typer

DEMO_NOTEBOOK = "notebooks/06_demo.ipynb"


def voila_command(notebook: Path, port: int, *, ip: str = "127.0.0.1", python: str | None = None) -> list[str]:
    """The Voilà command line: no browser, loopback only, exactly this port (no silent fallback to another)."""
    import sys

    return [
        python or sys.executable, "-m", "voila", str(notebook),
        f"--port={port}",
        "--no-browser",
        f"--Voila.ip={ip}",
        "--Voila.port_retries=0",
        "--theme=light",
    ]


def register(app: typer.Typer) -> None:
    """Add the demo command."""

    @app.command("demo")
    def demo(
        port: int = typer.Option(8866, help="port on 127.0.0.1"),
        no_browser: bool = typer.Option(False, "--no-browser", help="do not open a web browser"),
        notebook: Path = typer.Option(None, help=f"notebook to serve (default: {DEMO_NOTEBOOK})"),
    ) -> None:
        """Serve the demo studio (photo → poems from Gemini, base Qwen and LoRA Qwen) with Voilà until Ctrl-C.

        The offline default needs no key and no GPU: replayed Gemini and tiny random Qwen models, labelled as such.
        """
        import signal
        import subprocess
        import threading
        import webbrowser

        from poemlib.config import PROJECT_ROOT

        path = Path(notebook) if notebook else PROJECT_ROOT / DEMO_NOTEBOOK
        if not path.is_file():
            typer.echo(f"demo notebook not found: {path}", err=True)
            raise typer.Exit(2)
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("MPLBACKEND", "Agg")
        url = f"http://127.0.0.1:{port}/"
        typer.echo(f"poemlib demo: serving {path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}")
        typer.echo(f"open {url}  (Ctrl-C to stop; the first page load starts a kernel and loads the models)")
        if not no_browser:
            threading.Timer(3.0, webbrowser.open, args=(url,)).start()
        proc = subprocess.Popen(voila_command(path, port), cwd=str(PROJECT_ROOT), env=env)

        def _stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        # SIGTERM (and SIGINT where a shell left it ignored) stops Voilà and its kernels too, not just this process
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            code = stop_process_tree(proc.pid)
        if code not in (0, -15, 130, None):
            raise typer.Exit(code)


def stop_process_tree(pid: int, timeout_s: float = 10.0) -> int | None:
    """Terminate a process and every descendant (Voilà's kernels run in sessions of their own, so a process-group
    signal misses them); kill what is still alive after `timeout_s`. Returns the root's exit code."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    family = [*root.children(recursive=True), root]
    for proc in family:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)
    return getattr(root, "returncode", None)
