"""Crash safety: a CLI run over >= 200 photos is SIGKILLed mid-way, then re-run.

Every image ends with exactly one final record, the store parses, and no image is requested again after its
final record was written (checked with the loopback server's per-image request counts, which survive the kill
because the server lives in the test process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from poemlib import annotate as ann
from poemlib.config import PROJECT_ROOT
from poemlib.images import bytes_sha256, file_sha256
from poemlib.offline.gemini import GeminiServer
from poemlib.samples import sample_images
from tests.annotate.helpers import sigkill_when

VARIANTS_PER_PHOTO = 14
MIN_IMAGES = 200


def make_variants(folder: Path) -> list[Path]:
    """Distinct real-photo variants: crops of varying position and aspect ratio, some mirrored or flipped."""
    folder.mkdir(parents=True)
    out = []
    for src in sample_images():
        with Image.open(src) as raw:
            photo = (ImageOps.exif_transpose(raw) or raw).convert("RGB")
        w, h = photo.size
        for k in range(VARIANTS_PER_PHOTO):
            fw, fh = 0.50 + 0.03 * k, 0.92 - 0.025 * k
            left, top = int((w * (1 - fw)) * ((k * 37) % 11) / 10), int((h * (1 - fh)) * ((k * 53) % 7) / 6)
            crop = photo.crop((left, top, left + int(w * fw), top + int(h * fh)))
            if k % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if k % 3 == 0:
                crop = crop.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            path = folder / f"{src.stem}_v{k:02d}.jpg"
            crop.save(path, quality=88)
            out.append(path)
    return out


def cli(folder: Path, store: Path, base_url: str) -> list[str]:
    return [
        sys.executable, "-m", "poemlib.cli", "annotate", str(folder), "--out", str(store),
        "--base-url", base_url, "--concurrency", "16", "--rpm", "100000", "--no-progress", "--revise", "0",
    ]


def complete_lines(store: Path) -> int:
    try:
        return store.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_run_then_rerun_is_exactly_once(tmp_path) -> None:
    folder = tmp_path / "photos"
    store = tmp_path / "store.jsonl"
    files = make_variants(folder)
    cfg = ann.load_annotate_config()
    env = {**os.environ, "GEMINI_API_KEY": "offline-crash-test", "PYTHONPATH": str(PROJECT_ROOT)}

    with GeminiServer(mode="replay", latency_s=0.2) as server:
        # The key the server counts each image under (its identity): a matched sample photo's sha256, else the
        # sha256 of the bytes we send. Variants must not collide, or "requested again" would be ambiguous.
        def ident(path: Path) -> tuple[str, str]:
            sent = ann.prepare_for_gemini(path, cfg)
            matched, _how, _dist = server.images.match(sent, bytes_sha256(sent), extra_digests=server.references.keys())
            return file_sha256(path), matched or bytes_sha256(sent)

        with ThreadPoolExecutor(8) as pool:
            identity: dict[str, str] = dict(pool.map(ident, files))
        colliding = {i for i, n in Counter(identity.values()).items() if n > 1}
        for path in files:
            if identity[file_sha256(path)] in colliding:
                del identity[file_sha256(path)]
                path.unlink()
        assert len(identity) >= MIN_IMAGES, f"only {len(identity)} distinct variants"

        # 1. start the CLI, SIGKILL it once some records are on disk
        proc = subprocess.Popen(cli(folder, store, server.base_url), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
        sigkill_when(proc, lambda: complete_lines(store) >= 50, timeout_s=60, waiting_for="50 records written")
        time.sleep(0.5)  # let the server finish answering the orphaned in-flight requests
        done_before = ann.load_store(store)  # parses, torn tail or not
        requests_before = Counter(server.stats.by_digest)
        assert 0 < len(done_before) < len(identity), len(done_before)

        # 2. re-run to completion (in-process: same code path as the CLI's, minus a second interpreter start)
        rerun = ann.annotate_folder(folder, store, base_url=server.base_url, concurrency=16, rpm=100000, progress=False, revise=0)
        requests_after = Counter(server.stats.by_digest)

    records = list(ann.iter_store(store))  # the whole store parses
    per_sha = Counter(r.image_sha256 for r in records)
    assert set(per_sha) == set(identity), "every image has a record"
    assert all(n == 1 for n in per_sha.values()), {s: n for s, n in per_sha.items() if n != 1}
    assert all(ann.is_final(r) and r.status.value in ("ok", "unfit") for r in records)
    for sha, ident in identity.items():
        extra = requests_after[ident] - requests_before[ident]
        if sha in done_before:
            assert extra == 0, f"{sha[:12]} was requested again after its final record"
        else:
            assert extra == 1, f"{sha[:12]} was requested {extra} times by the re-run"
    assert rerun.skipped_done == len(done_before) and rerun.attempted == len(identity) - len(done_before) and rerun.failed == 0
