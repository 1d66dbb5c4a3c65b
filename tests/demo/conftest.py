"""Demo fixtures: no real model loading unless a test asks for the offline backends."""

from __future__ import annotations

import pytest


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Any attempt to load real backends fails the test."""
    import poemlib.backends

    def boom(*args, **kwargs):
        raise AssertionError("the app loaded real backends")

    monkeypatch.setattr(poemlib.backends, "load_backends", boom)
