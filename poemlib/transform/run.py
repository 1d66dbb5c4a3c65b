"""transform(): validate clean records, split by image, measure every row, write the dataset."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

from poemlib.config import SAMPLE_DIR, load_settings, resolve_path
from poemlib.io import write_jsonl
from poemlib.progress import track
from poemlib.transform.records import (
    SourceImage,
    add_rows,
    collect_images,
    load_records,
)
from poemlib.transform.report import (
    TransformReport,
    TransformValidationError,
    count_meter_ok,
    length_stats,
)
from poemlib.transform.split import split_images
from poemlib.transform.tokens import (
    _token_counter,
    default_processor_path,
    training_settings,
)
from poemlib.transform.write import (
    test_references,
    write_images,
    write_lengths,
    write_split_report,
    write_splits,
)


class TransformSettings(BaseModel):
    """configs/transform.yaml: split fractions, variants, eligibility, the training config and how images are stored."""

    val: float = 0.05
    test: float = 0.05
    seed: int = 0
    variants_per_image: int = Field(1, ge=1)
    eval_variants_per_image: int = Field(1, ge=1)
    include_unfit: bool = False
    exclude_flags: list[str] = Field(default_factory=list)
    link: str = "hardlink"
    train_config: str | dict[str, Any] = "tiny_cpu"


def transform(
    clean_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    val: float | None = None,
    test: float | None = None,
    seed: int | None = None,
    variants_per_image: int | None = None,
    eval_variants_per_image: int | None = None,
    include_unfit: bool | None = None,
    exclude_flags: list[str] | None = None,
    train_config: str | os.PathLike[str] | dict[str, Any] | None = None,
    processor: str | os.PathLike[str] | None = None,
    cutoff_len: int | None = None,
    link: str | None = None,
    config: str | os.PathLike[str] = "transform",
    verbose: bool = True,
) -> TransformReport:
    """Validate clean records and write the split LLaMA-Factory dataset to out_dir (see the package docstring).

    Defaults come from configs/transform.yaml; cutoff_len, the pixel budget and the processor from its training
    config. Raises TransformValidationError (naming every bad record) before writing anything.
    """
    overrides = {
        "val": val, "test": test, "seed": seed, "variants_per_image": variants_per_image, "eval_variants_per_image": eval_variants_per_image,
        "include_unfit": include_unfit, "exclude_flags": exclude_flags, "link": link,
        "train_config": str(train_config) if isinstance(train_config, os.PathLike) else train_config,
    }
    cfg = load_settings(TransformSettings, config, overrides=overrides)
    settings = training_settings(cfg.train_config)
    if cutoff_len is not None:
        settings["cutoff_len"] = int(cutoff_len)
    # `work/…` follows POEMLIB_WORK here as in every stage; other relative paths: the current directory first
    clean_path, out_dir = resolve_path(clean_path, prefer_cwd=True), resolve_path(out_dir, prefer_cwd=True).resolve()
    images_root = resolve_path(images_root, prefer_cwd=True).resolve() if images_root is not None else SAMPLE_DIR.resolve()

    issues: list[tuple[str, str]] = []
    records, skipped, n_input = load_records(clean_path, cfg.include_unfit, set(cfg.exclude_flags), issues)
    images = collect_images(records, images_root, skipped, issues)
    if issues:
        raise TransformValidationError(issues)
    if not images:
        raise TransformValidationError([(str(clean_path), "no eligible records")])
    assignment = split_images({sha: im.stratum for sha, im in images.items()}, cfg.val, cfg.test, cfg.seed)
    for sha, image in images.items():
        add_rows(image, cfg.variants_per_image if assignment[sha] == "train" else cfg.eval_variants_per_image, cfg.seed)
    processor_path = str(processor) if processor is not None else default_processor_path(settings["model_name_or_path"])
    length_rows = _measure_rows(images, assignment, settings, processor_path, issues)
    if issues:
        raise TransformValidationError(issues)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_images(out_dir, images, cfg.link)
    files, splits = write_splits(out_dir, images, assignment)
    count_meter_ok(splits, images, assignment)
    files["test_refs"] = write_jsonl(out_dir / "test_refs.jsonl", test_references(images, assignment))
    files["lengths"] = write_lengths(out_dir / "lengths.csv", length_rows)
    report = TransformReport(
        out_dir=out_dir, files=files, n_input_records=n_input, n_images=len(images), skipped=dict(skipped), splits=splits,
        lengths=length_stats(length_rows, settings["cutoff_len"]), seed=cfg.seed, val=cfg.val, test=cfg.test,
        variants_per_image=cfg.variants_per_image, include_unfit=cfg.include_unfit, image_max_pixels=settings["image_max_pixels"],
        image_min_pixels=settings["image_min_pixels"], processor=processor_path, normalised_images=sum(im.normalise for im in images.values()),
    )
    report.files["split_report"] = write_split_report(out_dir, report, images, assignment)
    if verbose:
        print(report.summary())
    return report


def _measure_rows(
    images: dict[str, SourceImage], assignment: dict[str, str], settings: dict[str, Any], processor_path: str, issues: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Token lengths of every row with the real processor at the training pixel budget; rows over cutoff_len are issues."""
    counter = _token_counter(processor_path, settings["image_max_pixels"], settings["image_min_pixels"], settings["template"])
    length_rows: list[dict[str, Any]] = []
    for sha, image in track(images.items(), desc="token lengths", unit="img"):
        for item in image.rows:
            total, n_vis = counter.count(item["row"]["messages"], image.pil, sha)
            length_rows.append({"split": assignment[sha], "image_sha256": sha, "variant": item["variant"], "text_tokens": total - n_vis, "visual_tokens": n_vis, "total_tokens": total})
            if total > settings["cutoff_len"]:
                issues.append((image.labels[0], f"row {item['variant']} has {total} tokens ({n_vis} visual) > cutoff_len {settings['cutoff_len']}"))
    return length_rows
