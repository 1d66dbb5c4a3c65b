"""Bad, odd and huge inputs are recorded or converted, and what is sent is an RGB JPEG within the budget."""

from __future__ import annotations

import io

from PIL import Image

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.samples import reference_by_name
from poemlib.schema import Status
from tests.annotate.helpers import run


def _sample(name: str = "coffee_cup.jpg") -> Image.Image:
    with Image.open(SAMPLE_DIR / name) as image:
        return image.convert("RGB")


def test_bad_inputs_are_recorded_or_converted_and_the_run_continues(tmp_path, gemini_replay_server) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    photo = _sample()
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    (folder / "notes.jpg").write_text("this is a text file, not a photo\n", encoding="utf-8")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    photo.convert("CMYK").save(folder / "cmyk.jpg", format="JPEG")
    rgba = _sample("dahlia_flower.jpg").convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(folder / "alpha.png")
    _sample("raccoon_face.jpg").resize((8192, 6144), Image.Resampling.NEAREST).save(folder / "huge.jpg", quality=80)  # 50.3 MP
    frames = [_sample("cat_chelsea.jpg").convert("P", palette=Image.Palette.ADAPTIVE), _sample("cat_chelsea.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P", palette=Image.Palette.ADAPTIVE)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    photo.save(folder / "scan.bmp", format="PPM")  # a format we do not send, under an image suffix
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)

    store = tmp_path / "store.jsonl"
    summary = run(folder, store, gemini_replay_server)
    records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
    assert len(records) == 9 and summary.attempted == 9
    bad = {
        "notes.jpg": "not an image",
        "empty.jpg": "empty file (0 bytes)",
        "truncated.jpg": "truncated or corrupt",
        "scan.bmp": "unsupported image format PPM",
        "phone.heic": "HEIC is not a supported format",
    }
    for name, message in bad.items():
        record = records[name]
        assert (record.status, record.error_kind, record.attempts) == (Status.failed, "bad_image", 0), name
        assert message in record.error_message and name in record.error_message, record.error_message
    for name in ("cmyk.jpg", "alpha.png", "huge.jpg", "anim.gif"):
        assert records[name].status in (Status.ok, Status.unfit), (name, records[name].error_message)
    assert gemini_replay_server.stats.requests == 4  # bad files never reach the API
    # what is sent is RGB JPEG within the pixel budget
    cfg = ann.load_annotate_config()
    for name in ("cmyk.jpg", "alpha.png", "huge.jpg", "anim.gif"):
        with Image.open(io.BytesIO(ann.prepare_for_gemini(folder / name, cfg))) as sent:
            assert sent.format == "JPEG" and sent.mode == "RGB" and sent.width * sent.height <= cfg.image_max_pixels
    # the huge photo is matched to its reference after downscaling: the replay knows it
    assert records["huge.jpg"].annotation == reference_by_name()["raccoon_face.jpg"]


def test_exif_orientation_is_applied_before_sending() -> None:
    cfg = ann.load_annotate_config()
    path = SAMPLE_DIR / "summer_palace_pagoda_exif6.jpg"
    with Image.open(path) as raw:
        stored = raw.size
    with Image.open(io.BytesIO(ann.prepare_for_gemini(path, cfg))) as sent:
        assert (sent.width > sent.height) == (stored[1] > stored[0])  # orientation 6: width and height swap
