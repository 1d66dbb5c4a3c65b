"""Splitting by image: stratified by poem type, deterministic by seed, counted over images."""

from __future__ import annotations

import math
import random
from collections import defaultdict

SPLITS = ("train", "val", "test")
DATASET_NAMES = {split: f"poem_{split}" for split in SPLITS}
UNFIT_STRATUM = "unfit"


def _round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() would round halves to even)."""
    return math.floor(x + 0.5)


def split_counts(n_images: int, val: float, test: float) -> dict[str, int]:
    """Images per split: round(N·fraction), at least 1 for a non-zero fraction; train keeps the rest (≥ 1)."""
    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} fraction must be in [0, 1), got {frac}")
    n_test = max(1, _round_half_up(n_images * test)) if test > 0 else 0
    n_val = max(1, _round_half_up(n_images * val)) if val > 0 else 0
    if n_images - n_test - n_val < 1:
        raise ValueError(f"{n_images} image(s) cannot fill train + {n_val} val + {n_test} test; add images or lower the fractions")
    return {"train": n_images - n_val - n_test, "val": n_val, "test": n_test}


def _systematic(items: list[str], k: int, rng: random.Random) -> list[str]:
    """k items at evenly spaced positions of an ordered list, with a random offset."""
    if k <= 0:
        return []
    n = len(items)
    offset = rng.random()
    return [items[min(n - 1, int((i + offset) * n / k))] for i in range(k)]


def split_images(strata: dict[str, str], val: float, test: float, seed: int = 0) -> dict[str, str]:
    """Assign each image sha256 to train/val/test, stratified by its stratum (poem_type), deterministic by seed."""
    counts = split_counts(len(strata), val, test)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for sha, stratum in strata.items():
        by_stratum[stratum].append(sha)
    rng = random.Random(f"split:{seed}")
    ordered: list[str] = []
    for stratum in sorted(by_stratum):
        shas = sorted(by_stratum[stratum])
        rng.shuffle(shas)
        ordered.extend(shas)
    assignment = {sha: "train" for sha in ordered}
    test_pick = _systematic(ordered, counts["test"], rng)
    for sha in test_pick:
        assignment[sha] = "test"
    rest = [sha for sha in ordered if assignment[sha] == "train"]
    for sha in _systematic(rest, counts["val"], rng):
        assignment[sha] = "val"
    return assignment
