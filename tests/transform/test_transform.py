"""Stage 03: leak-free splits by image sha256, stratification, determinism, dataset_info, validation, LLaMA-Factory reads it."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from poemlib.config import SAMPLE_DIR
from poemlib.images import file_sha256
from poemlib.instructions import (
    IMAGE_PLACEHOLDER,
    render_instruction,
    request_for_annotation,
    request_matches,
)
from poemlib.io import write_jsonl
from poemlib.schema import (
    POEM_TYPES,
    Annotation,
    PoemRequest,
    annotation_to_target,
    parse_annotation_text,
)
from poemlib.transform import (
    DATASET_NAMES,
    TransformValidationError,
    reference_records,
    split_counts,
    split_images,
    transform,
)

TINY_SETTINGS = {"cutoff_len": 1024, "image_max_pixels": 50176, "image_min_pixels": 3136, "template": "qwen2_vl"}


def _train_config(model_dir: Path, **extra) -> dict:
    """A training-config dict pointing the length check at the fixture's tiny model."""
    return {**TINY_SETTINGS, "model_name_or_path": str(model_dir), **extra}


def _images_root(tmp_path: Path) -> Path:
    """A copy of the sample photos plus the same bytes of one photo under a second name in a sub-folder."""
    root = tmp_path / "photos"
    shutil.copytree(SAMPLE_DIR, root, ignore=shutil.ignore_patterns("*.jsonl", "*.md"))
    (root / "dup").mkdir()
    shutil.copy(root / "cat_chelsea.jpg", root / "dup" / "same_cat_renamed.jpg")
    return root


def _clean_file(tmp_path: Path, records=None, *, with_duplicate: bool = True) -> Path:
    """clean.jsonl from the sample references; optionally a second record for the cat under its other name."""
    records = list(records if records is not None else reference_records())
    if with_duplicate:
        cat = next(r for r in records if r.image_paths == ["cat_chelsea.jpg"])
        records.append(cat.model_copy(update={"image_paths": ["dup/same_cat_renamed.jpg"]}))
        # and one record naming both files at once
        dahlia = next(i for i, r in enumerate(records) if r.image_paths == ["dahlia_flower.jpg"])
        records[dahlia] = records[dahlia].model_copy(update={"image_paths": ["dahlia_flower.jpg", "dup/../dahlia_flower.jpg"]})
    path = tmp_path / "clean.jsonl"
    write_jsonl(path, [r.model_dump(mode="json") for r in records])
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_qwen_dir):
    """One transform of the sample references (with a duplicate image under another name)."""
    tmp = tmp_path_factory.mktemp("transform")
    root = _images_root(tmp)
    clean = _clean_file(tmp)
    out = tmp / "dataset"
    report = transform(clean, out, images_root=root, val=0.15, test=0.15, seed=0, variants_per_image=3, include_unfit=True, train_config=_train_config(tiny_qwen_dir), verbose=False)
    return report, out, root


# ---------------------------------------------------------------------------
# instructions
# ---------------------------------------------------------------------------


def test_render_instruction_names_constraints_and_ends_with_reminder() -> None:
    generic = render_instruction(PoemRequest())
    assert generic == render_instruction()  # deterministic default
    req = PoemRequest(poem_type="词", cipai="浣溪沙", mood="闲适", extra_instruction="写出月色")
    text = render_instruction(req, variant=1)
    assert "浣溪沙" in text and "闲适" in text and "写出月色" in text
    assert "五言绝句" in render_instruction(PoemRequest(poem_type="五言绝句"))
    reminder_tail = generic[-30:]
    for variant in range(6):
        assert render_instruction(req, variant=variant).endswith(reminder_tail)
        assert render_instruction(PoemRequest(), variant=variant).endswith(reminder_tail)
    assert len({render_instruction(PoemRequest(), variant=v) for v in range(4)}) > 1
    rng = random.Random(0)
    assert all(render_instruction(PoemRequest(), rng=rng).endswith(reminder_tail) for _ in range(5))


def test_request_for_annotation_matches_target() -> None:
    ci = Annotation(create_condition=True, poem_type="词", poem_title="浣溪沙·晨咖", poem_content="一\n二", poem_explanation="表达闲适与宁静之情")
    jue = Annotation(create_condition=True, poem_type="七言绝句", poem_title="题", poem_content="一\n二", poem_explanation="写思乡之情")
    unfit = Annotation(create_condition=False, poem_content="表格", poem_explanation="不适合")
    rng = random.Random(0)
    kinds = Counter()
    for annotation in (ci, jue) * 200:
        request = request_for_annotation(annotation, rng)
        assert request_matches(request, annotation), (request, annotation)
        kinds["generic" if not (request.poem_type or request.mood) else "cipai" if request.cipai else "mood" if request.mood else "type"] += 1
    assert kinds["generic"] > 120 and kinds["type"] > 40 and kinds["mood"] > 20 and kinds["cipai"] > 20
    assert all(request_for_annotation(unfit, rng).poem_type in (None, *POEM_TYPES) for _ in range(20))


# ---------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------


def test_split_counts_round_and_keep_every_split() -> None:
    assert split_counts(14, 0.05, 0.05) == {"train": 12, "val": 1, "test": 1}  # 0.7 → 1 each (at least one)
    assert split_counts(100, 0.05, 0.05) == {"train": 90, "val": 5, "test": 5}
    assert split_counts(30, 0.25, 0.0) == {"train": 22, "val": 8, "test": 0}  # 7.5 rounds half up
    assert split_counts(10, 0.0, 0.0) == {"train": 10, "val": 0, "test": 0}
    with pytest.raises(ValueError, match="cannot fill"):
        split_counts(2, 0.05, 0.05)


def test_split_is_stratified_and_deterministic() -> None:
    rng = random.Random(1)
    sizes = {"五言绝句": 40, "七言绝句": 30, "五言律诗": 20, "七言律诗": 6, "词": 4}
    strata = {f"{rng.getrandbits(256):064x}": t for t, n in sizes.items() for _ in range(n)}
    a = split_images(strata, 0.1, 0.2, seed=0)
    assert a == split_images(dict(reversed(list(strata.items()))), 0.1, 0.2, seed=0)  # input order does not matter
    assert a != split_images(strata, 0.1, 0.2, seed=1)
    counts = Counter(a.values())
    assert counts == {"train": 70, "val": 10, "test": 20}
    for split, frac in (("val", 0.1), ("test", 0.2)):
        per_type = Counter(strata[s] for s, v in a.items() if v == split)
        for t, n in sizes.items():
            assert abs(per_type[t] - n * frac) <= 1, (split, t, per_type[t], n * frac)


# ---------------------------------------------------------------------------
# the written dataset
# ---------------------------------------------------------------------------


def test_no_image_in_two_splits_even_under_two_names(dataset) -> None:
    report, out, root = dataset
    split_report = json.loads((out / "split_report.json").read_text(encoding="utf-8"))
    shas = {split: set(v) for split, v in split_report["shas"].items()}
    assert not (shas["train"] & shas["val"]) and not (shas["train"] & shas["test"]) and not (shas["val"] & shas["test"])
    # the cat appears under two names but is one image
    cat_sha = file_sha256(root / "cat_chelsea.jpg")
    assert sum(cat_sha in s for s in shas.values()) == 1
    assert report.skipped.get("duplicate image (same sha256)") == 1
    assert report.n_images == 16
    # the rows agree with the report: every image file a split uses belongs to that split only
    used = {}
    for split in ("train", "val", "test"):
        rows = json.loads((out / f"poem_{split}.json").read_text(encoding="utf-8"))
        names = {row["images"][0] for row in rows}
        used[split] = names
        assert {Path(n).stem for n in names} == shas[split]
        assert len(rows) == report.splits[split].rows
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"]) and not (used["val"] & used["test"])
    # files in images/ are the bytes they are named after (linked), or the normalised PNG of the EXIF-rotated photo
    for path in (out / "images").iterdir():
        if path.suffix == ".jpg":
            assert file_sha256(path) == path.stem
    assert report.normalised_images == 1  # summer_palace_pagoda_exif6.jpg


def test_split_sizes_and_stratification_on_samples(dataset) -> None:
    report, _, _ = dataset
    assert {k: v.images for k, v in report.splits.items()} == {"train": 12, "val": 2, "test": 2}  # 16 · 0.15 = 2.4 → 2
    assert report.splits["train"].rows == 12 * 3 and report.splits["val"].rows == 2
    # val/test come from different strata (poem types), as proportional allocation over 6 strata gives
    for split in ("val", "test"):
        assert all(n == 1 for n in report.splits[split].by_type.values())
    assert sum(report.splits["train"].by_type.values()) == 12


def test_rows_dataset_info_and_targets(dataset) -> None:
    report, out, _ = dataset
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == set(DATASET_NAMES.values()) == {"poem_train", "poem_val", "poem_test"}
    for name, entry in info.items():
        assert entry["file_name"] == f"{name}.json" and (out / entry["file_name"]).exists()
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", "images": "images"}
        assert entry["tags"] == {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    refs = {r.image_sha256: r.annotation for r in reference_records()}
    rows = json.loads((out / "poem_train.json").read_text(encoding="utf-8"))
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"].startswith(IMAGE_PLACEHOLDER) and user["content"].count(IMAGE_PLACEHOLDER) == 1
        assert len(row["images"]) == 1 and not Path(row["images"][0]).is_absolute() and (out / row["images"][0]).is_file()
        sha = Path(row["images"][0]).stem
        assert assistant["content"] == annotation_to_target(refs[sha])  # exactly what inference parses back
        assert parse_annotation_text(assistant["content"]) == refs[sha]
        assert '"create_condition"' not in assistant["content"] or not refs[sha].create_condition
    # several instructions per training image
    per_image = Counter(Path(r["images"][0]).stem for r in rows)
    assert set(per_image.values()) == {3}
    texts_per_image = {}
    for r in rows:
        texts_per_image.setdefault(r["images"][0], set()).add(r["messages"][0]["content"])
    assert all(len(t) == 3 for t in texts_per_image.values())
    # test refs keep the reference annotation and the request for evaluation
    test_refs = [json.loads(line) for line in (out / "test_refs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["image_sha256"] for r in test_refs} == set(json.loads((out / "split_report.json").read_text())["shas"]["test"])
    for ref in test_refs:
        assert Annotation.model_validate(ref["annotation"]) == refs[ref["image_sha256"]]
        assert render_instruction(PoemRequest.model_validate(ref["request"])) is not None
    # the length distribution is reported
    assert 0 < report.lengths.min <= report.lengths.p50 <= report.lengths.max <= report.lengths.cutoff_len
    assert report.lengths.visual_max <= 64


def test_unfit_excluded_by_default_and_failed_skipped(tmp_path, tiny_qwen_dir) -> None:
    clean = _clean_file(tmp_path, with_duplicate=False)
    report = transform(clean, tmp_path / "ds", val=0.1, test=0.1, train_config=_train_config(tiny_qwen_dir), verbose=False)
    assert report.n_images == 14 and report.skipped == {"unfit (include_unfit=false)": 2}
    assert "unfit" not in {t for s in report.splits.values() for t in s.by_type}


def test_same_seed_same_files_other_seed_other_split(tmp_path, tiny_qwen_dir) -> None:
    clean = _clean_file(tmp_path, with_duplicate=False)
    cfg = _train_config(tiny_qwen_dir)
    kwargs = {"val": 0.15, "test": 0.15, "variants_per_image": 2, "include_unfit": True, "train_config": cfg, "verbose": False}
    transform(clean, tmp_path / "a", seed=0, **kwargs)
    transform(clean, tmp_path / "b", seed=0, **kwargs)
    for name in ("poem_train.json", "poem_val.json", "poem_test.json", "dataset_info.json", "test_refs.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    shas = lambda d: json.loads((d / "split_report.json").read_text())["shas"]
    others = []
    for seed in (1, 2, 3):
        transform(clean, tmp_path / f"s{seed}", seed=seed, **kwargs)
        others.append(shas(tmp_path / f"s{seed}"))
    assert any(o != shas(tmp_path / "a") for o in others)


def test_validation_errors_name_the_record_and_write_nothing(tmp_path, tiny_qwen_dir) -> None:
    root = tmp_path / "photos"
    shutil.copytree(SAMPLE_DIR, root, ignore=shutil.ignore_patterns("*.jsonl", "*.md"))
    records = reference_records()
    by_name = {r.image_paths[0]: r for r in records}
    (root / "coffee_cup.jpg").unlink()  # missing
    (root / "raccoon_face.jpg").write_bytes(b"not an image at all")  # corrupt (and its bytes changed)
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    bad = by_name["stairs_ascent.jpg"].model_copy(update={"image_paths": ["broken.jpg"], "image_sha256": file_sha256(broken)})
    records = [r for r in records if r.image_paths[0] != "stairs_ascent.jpg"] + [bad]
    clean = tmp_path / "clean.jsonl"
    lines = [r.model_dump(mode="json") for r in records] + [{"image_sha256": "nothex", "image_paths": ["x.jpg"]}]
    write_jsonl(clean, lines)
    out = tmp_path / "ds"
    with pytest.raises(TransformValidationError) as info:
        transform(clean, out, images_root=root, train_config=_train_config(tiny_qwen_dir), verbose=False)
    message = str(info.value)
    assert "coffee_cup.jpg" in message and "not found" in message
    assert "raccoon_face.jpg" in message
    assert "broken.jpg" in message and "does not open" in message
    assert f"clean.jsonl:{len(lines)}" in message and "not a valid AnnotationRecord" in message
    assert len(info.value.issues) == 4
    assert not out.exists()


def test_rows_longer_than_cutoff_are_named(tmp_path, tiny_qwen_dir) -> None:
    clean = _clean_file(tmp_path, with_duplicate=False)
    with pytest.raises(TransformValidationError) as info:
        transform(clean, tmp_path / "ds", train_config=_train_config(tiny_qwen_dir, cutoff_len=200), verbose=False)
    assert any("cat_chelsea.jpg" in label for label, _ in info.value.issues)
    assert all("> cutoff_len 200" in problem for _, problem in info.value.issues)
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------------------
# LLaMA-Factory reads the dataset from another working directory, with the lengths we computed
# ---------------------------------------------------------------------------


def test_llamafactory_loads_dataset_from_another_cwd(dataset, tiny_qwen_dir, tmp_path, monkeypatch) -> None:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    report, out, _ = dataset
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    args = {
        "model_name_or_path": str(tiny_qwen_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "dataset_dir": str(out),
        "media_dir": str(out),
        "dataset": "poem_train",
        "eval_dataset": "poem_val",
        "template": "qwen2_vl",
        "cutoff_len": 1024,
        "image_max_pixels": 50176,
        "image_min_pixels": 3136,
        "output_dir": str(tmp_path / "lf_out"),
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "use_cpu": True,
        "report_to": "none",
    }
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    train = module["train_dataset"]
    assert len(train) == report.splits["train"].rows
    # LLaMA-Factory's encoded lengths equal the lengths transform validated (rows are written in sha order)
    import csv

    with (out / "lengths.csv").open(encoding="utf-8") as fh:
        ours = [int(r["total_tokens"]) for r in csv.DictReader(fh) if r["split"] == "train"]
    rows = json.loads((out / "poem_train.json").read_text(encoding="utf-8"))
    order = sorted(range(len(rows)), key=lambda i: Path(rows[i]["images"][0]).stem)
    assert order == list(range(len(rows)))
    with (out / "lengths.csv").open(encoding="utf-8") as fh:
        table = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    by_key = {(r["image_sha256"], int(r["variant"])): int(r["total_tokens"]) for r in table}
    lf_lengths = sorted(len(x) for x in train["input_ids"])
    assert lf_lengths == sorted(by_key.values()) == sorted(ours)
