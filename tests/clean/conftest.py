"""Fixtures of the clean tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clean.data import write_legacy_shards


@pytest.fixture()
def legacy(tmp_path: Path) -> dict[str, Path]:
    """Three legacy shards over a Train/ + Val/ folder; Train/99.jpg is referenced but missing."""
    return write_legacy_shards(tmp_path)
