"""The demo studio's widgets: cards through poemlib.render, concurrent columns with fake backends, bad uploads, the CLI."""

from __future__ import annotations

import io
import re
import threading

import pytest
from PIL import Image

from poemlib.config import ConfigError
from poemlib.demo import OFFLINE_BANNER, build_app, load_demo_config, running_in_voila
from poemlib.meter import check, check_annotation
from poemlib.render import result_card_html
from poemlib.samples import sample_images
from poemlib.schema import Annotation, GenerationResult, PoemRequest
from tests.demo.helpers import JINGYESI, LIBAI, FakeBackend, poem_result, wait_for

# ---------------------------------------------------------------------------
# result_card_html (poemlib.render) on the demo's answers
# ---------------------------------------------------------------------------


def test_card_shows_title_badge_lines_meter_badges_explanation_and_stats() -> None:
    result = poem_result()
    report = check("七言绝句", LIBAI, "早发白帝城")
    html = result_card_html(result, report)
    assert "poem-card" in html and "早发白帝城" in html
    assert '<span class="poem-type-badge">七言绝句</span>' in html
    assert html.count('class="poem-line"') == 4
    assert "以轻快之笔写归舟之速" in html
    badges = re.findall(r'class="meter-badge ([a-z-]+)" data-check="(\w+)"', html)
    assert ("meter-ok", "form") in badges and ("meter-ok", "tone") in badges and ("meter-ok", "rhyme") in badges
    assert "上平声十五删" in html  # rhyme group on the rhyme badge
    # every character is coloured by its mark; rhyme characters are marked
    body = re.search(r'<div class="poem-body">(.*?)</div><div class="tone-legend">', html).group(1)
    assert body.count('class="ch ') == 28 and body.count('class="punct"') == 4
    assert "tone-ping" in body and "tone-ze" in body and len(re.findall(r'class="ch tone-\w+ rhyme"', body)) == 3
    assert "1.25 s" in html and "in 321" in html and "out 54" in html
    assert "poem-body vertical" not in html


def test_card_highlights_violations_and_failed_badges() -> None:
    report = check("五言绝句", JINGYESI)
    assert report.tone_ok is False
    html = result_card_html(poem_result(content=JINGYESI, poem_type="五言绝句", title="静夜思"), report)
    assert 'class="meter-badge meter-fail" data-check="tone"' in html
    # 上 (line 2, position 4) and 头 (line 3, position 2) are highlighted with the rule in their tooltip
    highlighted = re.findall(r'<span class="ch [^"]*violation[^"]*" title="([^"]*)">(.)</span>', html)
    assert {ch for _, ch in highlighted} == {"上", "头"}
    assert all("二四六分明" in tip for tip, _ in highlighted)
    assert 'class="violations"' in html and "L2P4" in html


def test_card_vertical_layout_and_rhyme_failure() -> None:
    content = LIBAI.replace("还", "回")
    report = check("七言绝句", content)
    html = result_card_html(poem_result(content=content), report, vertical=True)
    assert 'class="poem-body vertical"' in html
    assert 'data-check="rhyme"' in html and "押韵 ✗" in html
    assert re.search(r'class="ch [^"]*violation[^"]*" title="[^"]*出韵[^"]*">回<', html)


def test_card_without_meter_report_still_shows_the_poem() -> None:
    html = result_card_html(poem_result(), None)
    assert html.count('class="poem-line"') == 4 and "格律 未检" in html


def test_unparseable_answer_shows_raw_excerpt_escaped() -> None:
    raw = "灯火探出ic恋花<script>alert(1)</script>" + "浣熊" * 300
    result = GenerationResult(backend="base", error_kind="invalid_json", error_message="no JSON object in model output", raw_text=raw, latency_s=7.0)
    html = result_card_html(result, None, raw_chars=50)
    assert "未能解析 / could not parse" in html and "poem-error" in html
    assert 'class="raw-excerpt"' in html and "灯火探出ic恋花" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "浣熊" * 30 not in html  # excerpt only
    assert "poem-line" not in html


def test_backend_failure_and_unfit_cards() -> None:
    missing = GenerationResult(backend="lora", error_kind="generation_error",
                               error_message="Qwen LoRA unavailable (adapter missing): no PEFT adapter at work/train/tiny_lora")
    html = result_card_html(missing, None)
    assert "生成失败 / generation failed" in html and "adapter missing" in html and 'data-error-kind="generation_error"' in html
    unfit = GenerationResult(backend="gemini", annotation=Annotation(create_condition=False, poem_content="这是一页文字扫描件。", poem_explanation="无景可写。"))
    html = result_card_html(unfit, None)
    assert "不宜入诗" in html and "这是一页文字扫描件" in html


def test_ci_card_shows_cipai_badge() -> None:
    content = "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回。\n\n无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"
    result = poem_result(content=content, poem_type="词", title="浣溪沙·一曲新词")
    report = check_annotation(result.annotation)
    assert report is not None and report.cipai == "浣溪沙"
    html = result_card_html(result, report)
    assert "词牌 浣溪沙" in html and 'class="stanza-break"' in html and 'data-check="form"' in html


# ---------------------------------------------------------------------------
# The studio with fake backends
# ---------------------------------------------------------------------------


def test_building_with_fake_backends_loads_no_model_and_shows_states(no_model_loading) -> None:
    fakes = {"gemini": FakeBackend("gemini", poem_result(), state="offline replay"),
             "base": FakeBackend("base", poem_result()),
             "lora": FakeBackend("lora", poem_result(), state="adapter missing")}
    app = build_app(backends=fakes, profile="offline")
    assert app.statuses()["lora"].state == "adapter missing"
    assert "offline replay" in app.state_pills["gemini"].value and "state-replay" in app.state_pills["gemini"].value
    assert "adapter missing" in app.state_pills["lora"].value and "state-missing" in app.headers["lora"].value
    assert app.toggles["gemini"].description == "Fake gemini"
    assert OFFLINE_BANNER in app.banner.value
    assert "poem-studio" in app.widget._dom_classes
    assert len(app.sample_buttons) == len(sample_images())
    assert "background-image: url(data:image/jpeg;base64," in app.style.value
    assert not any(f.calls for f in fakes.values())


def test_columns_fill_independently_and_a_failure_stays_in_its_column(no_model_loading) -> None:
    gate = threading.Event()
    fakes = {
        "gemini": FakeBackend("gemini", poem_result(), delay=0.05),
        "base": FakeBackend("base", error=RuntimeError("CUDA out of memory (simulated)"), delay=0.1),
        "lora": FakeBackend("lora", poem_result(), gate=gate),
    }
    app = build_app(backends=fakes)
    app.select_sample("cat_chelsea.jpg")
    futures = app.generate()
    assert set(futures) == {"gemini", "base", "lora"}
    assert app.generate_button.disabled
    # gemini and base finish while lora is still held: their columns are filled, lora's is busy
    assert wait_for(lambda: futures["gemini"].done() and futures["base"].done())
    assert wait_for(lambda: "poem-line" in app.cards["gemini"].value)
    assert wait_for(lambda: "poem-error" in app.cards["base"].value)
    assert "CUDA out of memory (simulated)" in app.cards["base"].value
    assert "poem-busy" in app.cards["lora"].value and "spinner" in app.cards["lora"].value
    gate.set()
    assert futures["lora"].result(10).ok
    assert wait_for(lambda: "poem-line" in app.cards["lora"].value)
    assert wait_for(lambda: not app.generate_button.disabled)
    assert "完成" in app.status.value
    # the backends got the prepared photo (EXIF-rotated, RGB, within the pixel budget) and the request
    (image,), request = fakes["gemini"].calls[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.width * image.height <= app.max_pixels
    assert isinstance(request, PoemRequest)


def test_generate_sync_request_from_widgets_and_vertical_rerender(no_model_loading) -> None:
    fakes = {name: FakeBackend(name, poem_result()) for name in ("gemini", "base", "lora")}
    app = build_app(backends=fakes)
    app.poem_type.value = "词"
    assert app.cipai.layout.display is None  # the 词牌 list appears for 词
    app.cipai.value = "浣溪沙"
    app.mood.value = "思乡"
    app.prompt.value = "以“归”字收尾"
    app.temperature.value = 0.3
    app.max_tokens.value = 256
    app.seed.value = 7
    results = app.generate_sync("cat_chelsea", backends=["gemini", "lora"], timeout=10)
    assert set(results) == {"gemini", "lora"} and not fakes["base"].calls
    assert app.columns["base"].layout.display == "none"
    request = fakes["lora"].calls[0][1]
    assert (request.poem_type, request.cipai, request.mood, request.extra_instruction) == ("词", "浣溪沙", "思乡", "以“归”字收尾")
    assert (request.temperature, request.max_new_tokens, request.seed) == (0.3, 256, 7)
    app.poem_type.value = "七言绝句"
    assert app.cipai.layout.display == "none" and app.cipai.value == ""
    assert "poem-body vertical" not in app.cards["gemini"].value
    app.vertical.value = True
    assert "poem-body vertical" in app.cards["gemini"].value and "poem-body vertical" in app.cards["lora"].value
    assert "poem-col-gemini" in app.cards_html()


def test_generate_without_photo_or_backends_says_why(no_model_loading) -> None:
    fakes = {"gemini": FakeBackend("gemini", poem_result())}
    app = build_app(backends=fakes)
    assert app.generate() == {} and "choose a sample photo" in app.status.value
    app.select_sample(0)
    app.toggles["gemini"].value = False
    assert app.generate() == {} and "at least one backend" in app.status.value
    assert not fakes["gemini"].calls


def _jpeg_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_uploads_give_a_message_and_the_app_keeps_working(no_model_loading) -> None:
    fakes = {"gemini": FakeBackend("gemini", poem_result())}
    app = build_app(backends=fakes, config=load_demo_config(overrides={"max_upload_mb": 0.01}))  # ~10 KB
    # not an image, through the upload widget's own change event
    app._on_upload({"new": ({"name": "notes.txt", "type": "text/plain", "size": 11, "content": memoryview(b"hello world")},)})
    assert "bad upload" in app.status.value and "not an image" in app.status.value and app.photo is None
    # unsupported format (PCX is an image Pillow reads, but not one we send)
    pcx = io.BytesIO()
    Image.new("RGB", (8, 8)).save(pcx, format="PCX")
    assert app.load_upload(pcx.getvalue(), "scan.pcx") is False and "unsupported image format PCX" in app.status.value
    # too large
    big = b"\xff\xd8" + b"\0" * 20_000
    assert app.load_upload(big, "huge.jpg") is False and "over the 0.01 MB limit" in app.status.value
    # empty
    assert app.load_upload(b"", "empty.jpg") is False and "empty upload" in app.status.value
    # still usable: a good upload, then generate
    assert app.load_upload(_jpeg_bytes(), "red.jpg") is True
    assert app.photo_name == "red.jpg" and app.preview.layout.display is None and "uploaded" in app.status.value
    results = app.generate_sync(timeout=10)
    assert results["gemini"].ok and "poem-line" in app.cards["gemini"].value


def test_upload_is_exif_rotated_and_resized_to_the_pixel_budget(no_model_loading) -> None:
    app = build_app(backends={"gemini": FakeBackend("gemini", poem_result())})
    image = Image.new("RGB", (1200, 600), (10, 120, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    assert app.load_upload(buffer.getvalue(), "rotated.jpg")
    assert app.photo.height > app.photo.width  # portrait after EXIF rotation
    assert app.photo.width * app.photo.height <= app.max_pixels


def test_a_backend_that_returns_an_unparseable_answer_gets_a_clear_card(no_model_loading) -> None:
    junk = GenerationResult(backend="base", error_kind="invalid_json", error_message="no JSON object", raw_text="ic恋花ic恋花平平仄浣熊")
    app = build_app(backends={"base": FakeBackend("base", junk)})
    app.generate_sync(0, timeout=10)
    assert "未能解析 / could not parse" in app.cards["base"].value and "ic恋花ic恋花" in app.cards["base"].value


def test_loading_failure_is_shown_and_does_not_raise(monkeypatch) -> None:
    import poemlib.backends

    def broken(*args, **kwargs):
        raise RuntimeError("config exploded")

    monkeypatch.setattr(poemlib.backends, "load_backends", broken)
    app = build_app(profile="offline")
    assert wait_for(app.controller.loaded)
    assert "config exploded" in str(app.controller.load_error()) and app.statuses() == {}
    assert wait_for(lambda: "config exploded" in app.status.value)
    results = app.generate_sync(0, timeout=10)
    assert all(r.error_kind == "generation_error" for r in results.values())
    assert "config exploded" in app.cards["gemini"].value


def test_headless_run_and_voila_detection(monkeypatch, no_model_loading) -> None:
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    for key in ("VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_REQUEST_URL"):
        monkeypatch.delenv(key, raising=False)
    assert not running_in_voila()
    app = build_app(backends={"gemini": FakeBackend("gemini", poem_result())})
    shown = app.run_headless(None, "cat_chelsea.jpg")
    assert shown is not None and "poem-line" in shown.data
    monkeypatch.setenv("VOILA_BASE_URL", "/")
    assert running_in_voila()
    assert app.run_headless(None) is None


def test_bad_demo_config_names_the_file_and_the_fields(tmp_path) -> None:
    bad = tmp_path / "demo.yaml"
    bad.write_text("max_upload_mb: -1\nmeter_mode: tang\nthumb_sise: [1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_demo_config(bad)
    message = str(caught.value)
    assert str(bad) in message
    assert "max_upload_mb" in message and "meter_mode" in message and "thumb_sise" in message
    # a mapping takes the defaults for every key it leaves out
    partial = load_demo_config({"defaults": {"seed": 5}})
    assert partial.defaults.seed == 5 and partial.defaults.temperature == 0.7 and partial.profile == "offline"


def test_demo_config_and_cli() -> None:
    cfg = load_demo_config()
    assert cfg.profile == "offline" and cfg.max_upload_mb > 0 and set(cfg.backends) <= {"gemini", "base", "lora"}
    assert cfg.defaults.temperature == 0.7 and cfg.sliders.max_new_tokens == (16, 2048) and cfg.thumb_size == (104, 78)
    from pathlib import Path

    from typer.testing import CliRunner

    from poemlib.cli import app
    from poemlib.commands.demo import voila_command

    cmd = voila_command(Path("notebooks/06_demo.ipynb"), 8899)
    assert cmd[1:3] == ["-m", "voila"] and "--port=8899" in cmd and "--no-browser" in cmd
    assert "--Voila.ip=127.0.0.1" in cmd and "--Voila.port_retries=0" in cmd
    out = CliRunner().invoke(app, ["demo", "--help"])
    assert out.exit_code == 0 and "--no-browser" in out.output and "--port" in out.output
