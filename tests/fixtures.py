"""Sample data shared by every test package: the photos by the role they play and their recorded poems.

The photos, reference annotations and drafts themselves live in data/sample/ and are read through poemlib.samples;
this module only names them once for the tests.
"""

from __future__ import annotations

from pathlib import Path

from poemlib.config import SAMPLE_DIR
from poemlib.samples import draft_by_name, reference_by_name, sample_images

CAT = "cat_chelsea.jpg"  # fit; the photo most tests ask about
EXIF_ROTATED = "summer_palace_pagoda_exif6.jpg"  # stored rotated (EXIF Orientation 6)
UNFIT_TEXT_PAGE = "text_page_scan.jpg"  # unfit: a page of text
# Three fit photos of different aspect ratios: different image-token counts, so batches need padding.
MIXED_ASPECT_PHOTOS = (CAT, "rocket_launch_dusk.jpg", "stairs_ascent.jpg")


def sample_path(name: str) -> Path:
    """The path of a sample photo, failing loudly on a name that is not one."""
    path = SAMPLE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not a sample photo in {SAMPLE_DIR}")
    return path


__all__ = [
    "CAT",
    "EXIF_ROTATED",
    "MIXED_ASPECT_PHOTOS",
    "SAMPLE_DIR",
    "UNFIT_TEXT_PAGE",
    "draft_by_name",
    "reference_by_name",
    "sample_images",
    "sample_path",
]
