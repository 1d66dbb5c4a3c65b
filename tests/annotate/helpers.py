"""Shared helpers of the annotate tests: a test-sized config, a run against a server, per-image line counts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.offline.gemini import GeminiServer
from poemlib.samples import reference_by_name
from poemlib.schema import Status

__all__ = ["GeminiServer", "expected_status", "fast_config", "few_photos", "lines_per_sha", "run"]


def fast_config(**overrides) -> ann.AnnotateConfig:
    """The real config with test-sized backoff, timeouts and no RPM limit unless asked."""
    base = ann.load_annotate_config().model_copy(
        update={
            "backoff_initial_s": 0.01,
            "backoff_multiplier": 2.0,
            "backoff_max_s": 0.05,
            "jitter_s": 0.01,
            "max_attempts": 3,
            "timeout_s": 5.0,
            "rpm": None,
            "concurrency": 8,
            "revise_rounds": 0,  # first answers only (the server's drafts); revision tests ask for rounds explicitly
        }
    )
    return base.model_copy(update=overrides)


def run(images_dir, store, server, **kwargs) -> ann.RunSummary:
    """annotate_folder against `server` with the fast config and no progress bar unless given."""
    kwargs.setdefault("config", fast_config())
    kwargs.setdefault("progress", False)
    return ann.annotate_folder(images_dir, store, base_url=server.base_url, **kwargs)


def lines_per_sha(store: Path) -> dict[str, int]:
    """How many store lines each image has."""
    counts: dict[str, int] = {}
    for record in ann.iter_store(store):
        counts[record.image_sha256] = counts.get(record.image_sha256, 0) + 1
    return counts


@pytest.fixture()
def few_photos(tmp_path) -> Path:
    """Four sample photos (three poems, one text page) in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat_chelsea.jpg", "coffee_cup.jpg", "dahlia_flower.jpg", "text_page_scan.jpg"):
        shutil.copy(SAMPLE_DIR / name, folder / name)
    return folder


def expected_status(name: str) -> Status:
    """ok for a sample photo whose reference is a poem, unfit otherwise."""
    return Status.ok if reference_by_name()[name].create_condition else Status.unfit


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, timeout_s: float, waiting_for: str) -> None:
    """SIGKILL a running CLI as soon as `ready()` holds (the crash tests' kill point), failing if it ends first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {waiting_for} within {timeout_s:.0f} s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
