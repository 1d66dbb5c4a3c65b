"""Evaluation fixtures: a regulated reference poem, an unfit answer, items, and a folder of sample photos."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from poemlib.config import SAMPLE_DIR
from poemlib.evaluate import EvalItem
from poemlib.schema import Annotation, PoemRequest

E2E_PHOTOS = ["cat_chelsea.jpg", "dahlia_flower.jpg", "handwritten_equations.jpg"]


@pytest.fixture()
def poem() -> Annotation:
    """登鹳雀楼: a 五言绝句 of 20 characters in 4 lines."""
    return Annotation(create_condition=True, poem_type="五言绝句", poem_title="登鹳雀楼",
                      poem_content="白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。", poem_explanation="登高望远。")


@pytest.fixture()
def unfit() -> Annotation:
    """An answer that declines the photo."""
    return Annotation(create_condition=False, poem_content="这是一张图表。", poem_explanation="无诗意。")


@pytest.fixture()
def make_item(poem: Annotation) -> Callable[..., EvalItem]:
    """An EvalItem on the cat photo, with the given request and reference (default: the poem)."""

    def make(name: str, request: PoemRequest | None = None, reference: Annotation | None | str = "poem") -> EvalItem:
        ref = poem if reference == "poem" else reference
        return EvalItem(image=SAMPLE_DIR / "cat_chelsea.jpg", name=name, sha256="0" * 64, request=request or PoemRequest(), reference=ref)

    return make


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    """Three sample photos with their reference annotations (sample format)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    lines = []
    for line in (SAMPLE_DIR / "annotations.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line)["image"] in E2E_PHOTOS:
            lines.append(line)
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in E2E_PHOTOS:
        shutil.copy(SAMPLE_DIR / name, folder / name)
    return folder
