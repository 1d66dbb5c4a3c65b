"""Fixtures for the Gemini layer: a loopback server and a sample photo's JPEG as a client would send it."""

from __future__ import annotations

import pytest

from poemlib.config import SAMPLE_DIR
from poemlib.images import encode_jpeg, prepare_image
from poemlib.offline.gemini import GeminiServer

__all__ = ["GeminiServer"]


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """The cat sample photo, downscaled and re-encoded like every caller does."""
    return encode_jpeg(prepare_image(SAMPLE_DIR / "cat_chelsea.jpg", 1_003_520), 88)
