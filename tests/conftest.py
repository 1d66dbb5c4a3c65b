"""Shared fixtures: the tiny model is built once per session, the loopback Gemini server per test that asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never see a real key.
for _key in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
    os.environ.pop(_key, None)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built tiny Qwen2.5-VL directory (seed 0), shared by the session."""
    from poemlib.offline.tiny_qwen import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen") / "model", seed=0)


@pytest.fixture()
def gemini_replay_server():
    """A loopback Gemini server in replay mode over the sample references."""
    from poemlib.offline.gemini import GeminiServer

    with GeminiServer(mode="replay") as server:
        yield server
