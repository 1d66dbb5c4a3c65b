"""Throughput of the annotate stage against the loopback Gemini server at a fixed per-request latency.

    .venv/bin/python benchmarks/annotate_throughput.py [--images 100] [--latency 0.5] [--concurrency 16] [--rpm N]

One run measures, over the same photos and the same server latency:

- the pipeline (`annotate_folder`, `--concurrency` workers under the configured RPM limit), and
- a one-at-a-time baseline (the same code with concurrency 1: what the seed did),

and prints images/min of each, their ratio (target >= 10x) and the most HTTP requests the server saw in any 60-s
window against the configured RPM (must not exceed it). The server runs in its own process, as Gemini would, so
its CPU work does not compete with the client for the GIL. Photos are crops and mirror images of the bundled
sample photos (distinct bytes, so nothing is de-duplicated).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 10.0


def _serve(conn, latency_s: float) -> None:
    """Child process: a replay server answering after latency_s; reports stats on request."""
    from poemlib.offline.gemini import GeminiServer

    with GeminiServer(mode="replay", latency_s=latency_s) as server:
        conn.send(server.base_url)
        while True:
            message = conn.recv()
            if message == "stats":
                stats = server.stats
                conn.send({"times": list(stats.request_times), "requests": stats.requests, "peak_concurrency": stats.peak_concurrency})
            elif message == "reset":
                server.reset_stats()
                conn.send(True)
            else:
                break


def make_photos(folder: Path, n: int) -> list[Path]:
    """n distinct photos: crops of varying size and position of the sample photos, alternately mirrored."""
    from PIL import Image, ImageOps

    from poemlib.samples import sample_images

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in sample_images():
        with Image.open(path) as raw:
            sources.append((path.stem, (ImageOps.exif_transpose(raw) or raw).convert("RGB")))
    out = []
    for i in range(n):
        stem, photo = sources[i % len(sources)]
        k = i // len(sources)
        w, h = photo.size
        fw, fh = 0.95 - 0.02 * (k % 20), 0.9 - 0.015 * (k % 20)
        left, top = int(w * (1 - fw) * ((k * 7) % 5) / 4), int(h * (1 - fh) * ((k * 3) % 4) / 3)
        crop = photo.crop((left, top, left + int(w * fw), top + int(h * fh)))
        if k % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"{stem}_{k:03d}.jpg"
        crop.save(path, quality=88)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100, help="photos per run (60-100 recommended)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rpm", type=int, default=None, help="default: configs/annotate.yaml")
    args = parser.parse_args(argv)

    from poemlib import annotate as ann
    from poemlib.gemini import peak_in_window

    cfg = ann.load_annotate_config()
    rpm = args.rpm or cfg.rpm
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, args.latency), daemon=True)
    server.start()
    base_url = parent.recv()
    try:
        with tempfile.TemporaryDirectory(prefix="annotate-bench-") as tmp:
            photos = Path(tmp) / "photos"
            make_photos(photos, args.images)
            # Warm-up outside the timings: SDK import, connection, the server's reference thumbnails.
            warm = Path(tmp) / "warm"
            make_photos(warm, 1)
            ann.annotate_folder(warm, Path(tmp) / "warm.jsonl", base_url=base_url, progress=False)

            results = {}
            for name, concurrency in (("pipeline", args.concurrency), ("baseline", 1)):
                parent.send("reset")
                parent.recv()
                started = time.monotonic()
                summary = ann.annotate_folder(photos, Path(tmp) / f"{name}.jsonl", concurrency=concurrency, rpm=rpm, base_url=base_url, progress=False)
                wall = time.monotonic() - started
                parent.send("stats")
                stats = parent.recv()
                assert summary.attempted == args.images and summary.failed == 0, summary.text()
                results[name] = {
                    "images_per_min": args.images / wall * 60,
                    "wall_s": wall,
                    "peak_60s": peak_in_window(stats["times"], 60.0),
                    "requests": stats["requests"],
                    "peak_concurrency": stats["peak_concurrency"],
                }
                print(
                    f"{name:9s} concurrency {concurrency:2d}: {args.images} images in {wall:6.2f} s → {results[name]['images_per_min']:8.1f} images/min "
                    f"(server: {stats['requests']} requests, peak {stats['peak_concurrency']} in flight, peak {results[name]['peak_60s']} in any 60 s)",
                    flush=True,
                )
    finally:
        parent.send("stop")
        server.join(timeout=10)

    ratio = results["pipeline"]["images_per_min"] / results["baseline"]["images_per_min"]
    peak = max(r["peak_60s"] for r in results.values())
    print(f"server latency {args.latency:.2f} s per request, {args.images} distinct photos per run")
    print(f"speed-up pipeline / one-at-a-time: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x) {'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")
    print(f"peak requests in any 60 s window: {peak} (configured RPM {rpm}) {'OK' if peak <= rpm else 'EXCEEDED'}")
    return 0 if ratio >= TARGET_RATIO and peak <= rpm else 1


if __name__ == "__main__":
    sys.exit(main())
