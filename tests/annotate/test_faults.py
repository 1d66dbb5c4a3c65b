"""Every fault the loopback server produces ends in the right record; key problems and repeated rejections stop the run."""

from __future__ import annotations


import pytest
from PIL import Image

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.gemini import keys
from poemlib.images import file_sha256
from poemlib.samples import sample_images
from poemlib.schema import Status
from tests.annotate.helpers import (
    GeminiServer,
    expected_status,
    fast_config,
    lines_per_sha,
    run,
)

# image → (fault rule, expected status or None for "the reference's", expected error kind, attempts)
# (an answer that is not JSON or stops at MAX_TOKENS is asked once more before it counts as failed: 2 attempts)
FAULT_PLAN = {
    "ancient_coins_pompeii.jpg": ("429*2", None, None, 3),
    "astronaut_eileen_collins.jpg": ("429", "failed", "rate_limited", 3),
    "cameraman_on_lawn.jpg": ("500*1", None, None, 2),
    "cat_chelsea.jpg": ("500", "failed", "server_error", 3),
    "clock_motion_blur.jpg": ("503", "failed", "server_error", 3),
    "coffee_cup.jpg": ("504", "failed", "timeout", 3),
    "dahlia_flower.jpg": ("non_json", "failed", "invalid_json", 2),
    "grace_hopper_portrait.jpg": ("safety", "failed", "safety", 1),
    "grass_closeup.jpg": ("blocked", "failed", "blocked", 1),
    "handwritten_equations.jpg": ("max_tokens", "failed", "truncated", 2),
    "hubble_deep_field.jpg": ("empty", "failed", "empty", 1),
    "raccoon_face.jpg": ("recitation", "failed", "recitation", 1),
    "rocket_launch_dusk.jpg": ("bad_body*1", None, None, 2),
    "stairs_ascent.jpg": ("slow*1", None, None, 2),
    "summer_palace_pagoda_exif6.jpg": ("slow", "failed", "timeout", 3),
    "text_page_scan.jpg": ("400", "failed", "api_error", 1),
}


def test_every_fault_kind_ends_in_the_right_state(tmp_path) -> None:
    names = {p.name for p in sample_images()}
    assert set(FAULT_PLAN) == names, "the plan covers every sample photo"
    by_digest = {file_sha256(SAMPLE_DIR / name): rule for name, (rule, *_rest) in FAULT_PLAN.items()}
    store = tmp_path / "store.jsonl"
    # The timeout is far below the slow fault and far above an ordinary answer, so a loaded machine changes no outcome.
    config = fast_config(timeout_s=2.0, max_attempts=3, concurrency=16)
    warm = tmp_path / "warm"
    warm.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 160)).save(warm / "sky.jpg")  # not a sample photo: no fault applies to it
    with GeminiServer(mode="replay", fault_by_digest=by_digest, slow_s=8.0, retry_after_s=0.2) as server:
        # Warm the SDK and the server's matcher up: the timeout is about the faults, not a cold first request.
        run(warm, tmp_path / "warm.jsonl", server, config=fast_config(timeout_s=30.0))
        server.reset_stats()
        summary = run(SAMPLE_DIR, store, server, config=config)
        records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
        for name, (rule, status, kind, attempts) in FAULT_PLAN.items():
            record = records[name]
            want = Status(status) if status else expected_status(name)
            assert (record.status, record.error_kind, record.attempts) == (want, kind, attempts), (name, rule, record.error_message)
            if kind in ("invalid_json", "truncated"):
                assert record.raw_text, f"{name}: raw text kept for inspection"
            if kind:
                assert record.error_message
        assert "Retry-After" not in records["astronaut_eileen_collins.jpg"].error_message
        assert records["grace_hopper_portrait.jpg"].error_message.startswith("answer stopped by finishReason SAFETY")
        assert "HARM_CATEGORY" in records["grace_hopper_portrait.jpg"].error_message
        assert summary.failed_by_kind == {"api_error": 1, "blocked": 1, "empty": 1, "invalid_json": 1, "rate_limited": 1, "recitation": 1, "safety": 1, "server_error": 2, "timeout": 2, "truncated": 1}
        assert summary.retries == sum(a - 1 for (_r, _s, k, a) in FAULT_PLAN.values() if k not in ("api_error", "invalid_json", "truncated"))
        assert summary.recovered_requests == 2  # the non-JSON and the truncated answer were asked once more
        # 429s honoured Retry-After (0.2 s) rather than the 0.01 s backoff: two waits ≥ 0.2 s each
        assert records["ancient_coins_pompeii.jpg"].latency_s >= 0.4

        # Re-run with the faults gone: transient failures (rate_limited, server_error, timeout, api_error) are retried,
        # content failures (safety, blocked, truncated, invalid_json, empty, recitation) are final.
        server.plan._rules.clear()
        again = run(SAMPLE_DIR, store, server, config=config)
        retried = {n for n, (_r, _s, k, _a) in FAULT_PLAN.items() if k in ("rate_limited", "server_error", "timeout", "api_error")}
        assert again.retried_from_store == len(retried) and again.attempted == len(retried) and again.failed == 0
        now = {r.image_paths[0]: r for r in ann.load_store(store).values()}
        for name in retried:
            assert now[name].status == expected_status(name)
        counts = {r.image_paths[0]: c for r, c in zip(ann.load_store(store).values(), [lines_per_sha(store)[s] for s in ann.load_store(store)])}
        assert all(counts[n] == (2 if n in retried else 1) for n in FAULT_PLAN)


def test_invalid_key_stops_the_whole_run_at_once(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay", valid_keys={"right-key"}, latency_s=0.05) as server:
        with pytest.raises(ann.AnnotateAuthError, match="API key") as info:
            run(SAMPLE_DIR, store, server, api_key="wrong-key", config=fast_config(concurrency=4))
        assert server.stats.requests <= 4  # the in-flight ones at most, not one per image
        assert "wrong-key" not in str(info.value)
        summary = info.value.summary
        assert summary is not None and summary.aborted and summary.remaining == len(sample_images())
        assert not ann.load_store(store)  # no image was marked failed because of the key
        ok = run(SAMPLE_DIR, store, server, api_key="right-key")
        assert ok.attempted == len(sample_images()) and ok.failed == 0


def test_403_permission_denied_also_stops_the_run(few_photos, tmp_path) -> None:
    with GeminiServer(mode="replay", script=["ok", "403"], latency_s=0.02) as server:
        with pytest.raises(ann.AnnotateAuthError, match="HTTP 403 PERMISSION_DENIED") as info:
            run(few_photos, tmp_path / "store.jsonl", server, config=fast_config(concurrency=1))
        assert server.stats.requests == 2
    (kept,) = ann.load_store(tmp_path / "store.jsonl").values()  # the answer before the 403 is kept, nothing else
    assert kept.status is expected_status(kept.image_paths[0]) and kept.annotation is not None
    assert info.value.summary.aborted and info.value.summary.remaining == 3


def test_key_resolution_and_offline_hint(tmp_path, monkeypatch) -> None:
    env = tmp_path / ".env"
    env.write_text('# secrets\nexport GEMINI_API_KEY="from-dotenv"\n', encoding="utf-8")
    assert ann.resolve_api_key(env_file=env) == "from-dotenv"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    assert ann.resolve_api_key(env_file=env) == "from-env"
    assert ann.resolve_api_key("explicit", env_file=env) == "explicit"
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setattr(keys, "PROJECT_ROOT", tmp_path / "empty")  # no .env there
    assert ann.resolve_api_key() is None
    with pytest.raises(ann.AnnotateConfigError, match="--offline"):
        ann.annotate_folder(SAMPLE_DIR, tmp_path / "store.jsonl", progress=False)
    assert not (tmp_path / "store.jsonl").exists()


def test_a_run_stops_after_consecutive_rejected_requests(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="faults", fault_rate=1.0, faults=("400",)) as server:
        with pytest.raises(ann.AnnotateRunError, match="3 consecutive requests were rejected") as info:
            run(SAMPLE_DIR, store, server, config=fast_config(concurrency=1, abort_after_consecutive_api_errors=3))
        assert server.stats.requests == 3 and info.value.summary.failed == 3
        assert [r.error_kind for r in ann.load_store(store).values()] == ["api_error"] * 3
        # api_error is in retry_on_rerun: once the cause is fixed, the next run redoes them
        server.plan.fault_rate = 0.0
        assert run(SAMPLE_DIR, store, server).attempted == len(sample_images())
