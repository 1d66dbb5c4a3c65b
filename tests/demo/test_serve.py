"""`poemlib demo` serves the studio with Voilà and, when stopped by SIGTERM, leaves no server or kernel behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_kernel(cli: psutil.Process, port: int, timeout_s: float = 120.0) -> list[psutil.Process]:
    """Load the page (Voilà starts a kernel for it) and return the CLI's descendants once a kernel runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).read(200)
            break
        except OSError:
            time.sleep(0.5)
    while time.monotonic() < deadline:
        family = cli.children(recursive=True)
        if any("ipykernel" in " ".join(p.cmdline()) for p in family if p.is_running()):
            return family
        time.sleep(0.5)
    raise AssertionError(f"no kernel started under the demo within {timeout_s} s: {[p.cmdline() for p in cli.children(recursive=True)]}")


def test_sigterm_stops_voila_and_its_kernels(tmp_path) -> None:
    port = _free_port()
    env = {**os.environ, "POEMLIB_WORK": str(tmp_path / "work")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "poemlib", "demo", "--no-browser", f"--port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        family = _wait_for_kernel(psutil.Process(proc.pid), port)
        assert any("voila" in " ".join(p.cmdline()) for p in family)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(family, timeout=15)
        assert alive == [], f"left running after SIGTERM: {[p.cmdline() for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
