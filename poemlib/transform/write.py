"""Writing the dataset: images, split files, dataset_info, test references, lengths and the split report."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from poemlib.instructions import IMAGE_PLACEHOLDER
from poemlib.io import atomic_write, write_json
from poemlib.transform.records import SourceImage
from poemlib.transform.report import SplitStats
from poemlib.transform.split import DATASET_NAMES, SPLITS


def dataset_info() -> dict[str, Any]:
    """The dataset_info.json entries for the three splits (sharegpt, messages with role/content tags, images)."""
    entry = {
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }
    return {name: {"file_name": f"{name}.json", **entry} for name in DATASET_NAMES.values()}


def link_or_copy(src: Path, dst: Path, mode: str) -> None:
    """Hardlink src to dst (copy when the link is impossible or mode is 'copy')."""
    if dst.exists():
        dst.unlink()
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def write_images(out_dir: Path, images: dict[str, SourceImage], link: str) -> None:
    """images/<sha><suffix>: each used image once (a link to the source, or the normalised PNG)."""
    img_dir = out_dir / "images"
    if img_dir.exists():
        shutil.rmtree(img_dir)
    img_dir.mkdir(parents=True)
    for sha, image in images.items():
        dst = img_dir / f"{sha}{image.suffix}"
        if image.normalise:
            image.pil.save(dst, format="PNG")
        else:
            link_or_copy(image.source, dst, link)


def write_splits(out_dir: Path, images: dict[str, SourceImage], assignment: dict[str, str]) -> tuple[dict[str, Path], dict[str, SplitStats]]:
    """poem_<split>.json (rows in sha order: stable files whatever the input order) and dataset_info.json."""
    files: dict[str, Path] = {}
    splits: dict[str, SplitStats] = {}
    order = sorted(images)
    for split in SPLITS:
        shas = [sha for sha in order if assignment[sha] == split]
        rows = [item["row"] for sha in shas for item in images[sha].rows]
        files[DATASET_NAMES[split]] = write_json(out_dir / f"{DATASET_NAMES[split]}.json", rows)
        by_type: dict[str, int] = {}
        for sha in shas:
            by_type[images[sha].stratum] = by_type.get(images[sha].stratum, 0) + 1
        splits[split] = SplitStats(images=len(shas), rows=len(rows), by_type=by_type)
    files["dataset_info"] = write_json(out_dir / "dataset_info.json", dataset_info())
    return files, splits


def test_references(images: dict[str, SourceImage], assignment: dict[str, str]) -> list[dict[str, Any]]:
    """One test_refs.jsonl row per test row: the image, the request and instruction, the reference answer."""
    refs = []
    for sha in sorted(images):
        if assignment[sha] != "test":
            continue
        image = images[sha]
        for item in image.rows:
            refs.append(
                {
                    "image_sha256": sha,
                    "image": item["row"]["images"][0],
                    "source_paths": image.record.image_paths,
                    "poem_type": image.record.annotation.poem_type,
                    "variant": item["variant"],
                    "request": item["request"].model_dump(exclude_defaults=True),
                    "instruction": item["row"]["messages"][0]["content"][len(IMAGE_PLACEHOLDER) :],
                    "target": item["row"]["messages"][1]["content"],
                    "annotation": image.record.annotation.model_dump(mode="json"),
                    "meter": image.record.meter,
                    "flags": image.record.flags,
                }
            )
    return refs


def write_lengths(path: Path, length_rows: list[dict[str, Any]]) -> Path:
    """lengths.csv: the token length of every row."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(length_rows[0]))
    writer.writeheader()
    writer.writerows(length_rows)
    return atomic_write(path, buffer.getvalue())


def write_split_report(out_dir: Path, report: Any, images: dict[str, SourceImage], assignment: dict[str, str]) -> Path:
    """split_report.json: the report's numbers, file names, the sha256 lists per split and each image's sources."""
    order = sorted(images)
    split_report = {
        **json.loads(report.model_dump_json(exclude={"files"})),
        "files": {k: v.name for k, v in report.files.items()},
        "shas": {split: [sha for sha in order if assignment[sha] == split] for split in SPLITS},
        "sources": {sha: images[sha].record.image_paths for sha in order},
    }
    return write_json(out_dir / "split_report.json", split_report)


