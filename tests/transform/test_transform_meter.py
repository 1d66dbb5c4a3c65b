"""transform reports the 合律 share (form, 平仄 and rhyme all pass) of the poems it writes, per split and overall."""

from __future__ import annotations

from poemlib.config import SAMPLE_DIR
from poemlib.io import write_jsonl
from poemlib.meter import check_annotation
from poemlib.samples import draft_by_name
from poemlib.transform import reference_records, transform

TINY_SETTINGS = {"cutoff_len": 1024, "image_max_pixels": 50176, "image_min_pixels": 3136, "template": "qwen2_vl"}


def test_meter_share_counts_the_drafts_written_as_not_heli(tmp_path, tiny_qwen_dir) -> None:
    drafts = draft_by_name()
    records = []
    for index, record in enumerate(reference_records()):
        name = record.image_paths[0]
        if name in drafts and index % 2 == 0:  # every other poem: our flawed draft instead of the reference
            record = record.model_copy(update={"annotation": drafts[name]})
        records.append(record)
    clean = tmp_path / "clean.jsonl"
    write_jsonl(clean, [r.model_dump(mode="json") for r in records])
    config = {**TINY_SETTINGS, "model_name_or_path": str(tiny_qwen_dir)}
    report = transform(clean, tmp_path / "ds", images_root=SAMPLE_DIR, val=0.15, test=0.15, seed=0, train_config=config, verbose=False)
    poems = [r for r in records if r.status.value == "ok"]
    passing = sum(check_annotation(r.annotation).ok for r in poems)
    assert 0 < passing < len(poems)
    assert sum(s.poems for s in report.splits.values()) == len(poems) and sum(s.meter_ok for s in report.splits.values()) == passing
    assert report.meter_ok_share == passing / len(poems)
    assert f"合律率 of the poems written: {passing / len(poems):.1%}" in report.summary()
    assert all(row["合律率"] is None or 0 <= row["合律率"] <= 1 for row in report.table())
