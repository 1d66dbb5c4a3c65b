"""词牌: the public face of the 词 checker (names and titles in `ci_data`, the check itself in `ci_check`)."""

from __future__ import annotations

from poemlib.meter.ci_check import CiResult, check_ci
from poemlib.meter.ci_data import (
    CIPU_PATH,
    Cipai,
    Stanza,
    Variant,
    cipai_names,
    closest_names,
    load_cipai,
    load_cipu,
    parse_cipai,
    title_head,
)

__all__ = [
    "CIPU_PATH",
    "CiResult",
    "Cipai",
    "Stanza",
    "Variant",
    "check_ci",
    "cipai_names",
    "closest_names",
    "load_cipai",
    "load_cipu",
    "parse_cipai",
    "title_head",
]
