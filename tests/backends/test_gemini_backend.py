"""The Gemini backend against the loopback server: reference answers, retries through poemlib.gemini, no key."""

from __future__ import annotations

from PIL import Image

from poemlib import backends as bk
from poemlib.config import SAMPLE_DIR
from poemlib.schema import PoemRequest


def test_gemini_backend_against_the_loopback_server(gemini_replay_server) -> None:
    from poemlib.samples import draft_by_name, replay_mismatch

    backend = bk.GeminiBackend("gemini", "Gemini (replay)", api_key="test", base_url=gemini_replay_server.base_url, state="offline replay")
    assert backend.status().ready and backend.status().state == "offline replay"
    assert gemini_replay_server.base_url in backend.status().detail
    drafts = draft_by_name()  # one call per photo: the replay's first answer, our flawed draft of the reference
    names = ["cat_chelsea.jpg", "dahlia_flower.jpg"]
    noise = Image.effect_noise((320, 240), 80).convert("RGB")
    results = backend.generate([SAMPLE_DIR / n for n in names] + [noise], PoemRequest(poem_type="七言绝句", temperature=0.2))
    assert [r.backend for r in results] == ["gemini"] * 3
    for name, result in zip(names, results):
        assert result.ok, result.error_message
        assert result.annotation.poem_content == drafts[name].poem_content
        assert result.latency_s > 0
    # the cat's recorded poem is a 五言绝句, not the 七言绝句 asked for: the answer says so; the dahlia's is one
    cat, dahlia = results[0].annotation, results[1].annotation
    note = "【离线回放：所求体裁（七言绝句）无录制诗，以下为录制的五言绝句】"
    assert replay_mismatch(cat) == note and cat.poem_explanation == note + drafts["cat_chelsea.jpg"].poem_explanation
    assert replay_mismatch(dahlia) is None and dahlia == drafts["dahlia_flower.jpg"]
    assert results[2].annotation is not None and results[2].annotation.create_condition is False
    assert gemini_replay_server.stats.requests == 3


def test_gemini_backend_retries_429_and_503() -> None:
    """Transient failures are retried by poemlib.gemini's one retry path, honouring Retry-After."""
    from poemlib.offline import GeminiServer
    from poemlib.samples import draft_by_name

    with GeminiServer(mode="replay", script=["429", "503", "ok"], retry_after_s=0.2) as server:
        backend = bk.GeminiBackend("gemini", "Gemini", api_key="test", base_url=server.base_url)
        backend.settings = backend.settings.model_copy(update={"backoff_initial_s": 0.05, "jitter_s": 0.0})
        result = backend.generate([SAMPLE_DIR / "cat_chelsea.jpg"], PoemRequest())[0]
        assert result.ok and result.annotation == draft_by_name()["cat_chelsea.jpg"]
        assert server.stats.requests == 3
        assert result.latency_s >= 0.2  # waited at least the 429's Retry-After


def test_gemini_backend_gives_up_with_the_failure_kind() -> None:
    from poemlib.offline import GeminiServer

    with GeminiServer(mode="replay", script=["503", "503"]) as server:
        backend = bk.GeminiBackend("gemini", "Gemini", api_key="test", base_url=server.base_url)
        backend.settings = backend.settings.model_copy(update={"max_attempts": 2, "backoff_initial_s": 0.01, "jitter_s": 0.0})
        result = backend.generate([SAMPLE_DIR / "cat_chelsea.jpg"], PoemRequest())[0]
    assert not result.ok and result.error_kind == "server_error"
    assert "503" in result.error_message or "UNAVAILABLE" in result.error_message
