"""The demo page in a real browser: Voilà serves notebooks/06_demo.ipynb, headless Chromium (Debian's) drives it.

Offline profile: Gemini is the loopback replay server, base is the tiny random Qwen and LoRA a small random-init PEFT
adapter on it, both built into a scratch work dir (POEMLIB_WORK) for the Voilà kernel. The screenshot is kept in
test-artifacts/demo.png.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poemlib.commands.demo import voila_command
from tests.demo.helpers import make_random_lora

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "06_demo.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "demo.png"
SAMPLE = "cat_chelsea.jpg"
BACKENDS = ("gemini", "base", "lora")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _ensure_chromium() -> None:
    """Install Chromium and a CJK font with scripts/system_deps.sh when they are missing (root only), else skip."""
    have_font = subprocess.run("fc-list :lang=zh | grep -qi noto", shell=True, check=False).returncode == 0 if shutil.which("fc-list") else False
    if (not os.path.exists(CHROMIUM) or not have_font) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "system_deps.sh")], check=False, timeout=900)
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bash scripts/system_deps.sh as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is missing (pip install -e '.[test]')")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch work dir with the tiny model and a LoRA adapter in their offline places."""
    from poemlib.offline.tiny_qwen import ensure_tiny_qwen

    _ensure_chromium()
    work = tmp_path_factory.mktemp("demo-work")
    model_dir = ensure_tiny_qwen(work / "models" / "tiny-qwen2.5-vl")
    make_random_lora(model_dir, work / "train" / "tiny_lora")
    return work


@pytest.fixture(scope="module")
def voila_url(demo_work: Path, tmp_path_factory: pytest.TempPathFactory):
    """Voilà serving the demo notebook on a free loopback port, kernels pointed at the scratch work dir."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(POEMLIB_WORK=str(demo_work), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               MPLBACKEND="Agg")
    log_path = tmp_path_factory.mktemp("voila") / "voila.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(voila_command(NOTEBOOK, port, python=sys.executable), cwd=str(REPO_ROOT), env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    break  # listening (the page itself executes the notebook, so it is not fetched here)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not answer on {url}:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(900)
def test_demo_page_generates_with_all_three_backends(voila_url) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, log_path = voila_url
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200}, locale="zh-CN")
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.goto(url, timeout=300_000, wait_until="domcontentloaded")
            try:
                page.wait_for_selector(".poem-studio .generate-button", timeout=300_000)
            except Exception as exc:  # re-raised with the server log
                page.screenshot(path=str(ARTIFACTS / "demo-load-failed.png"), full_page=True)
                server_log = log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the studio did not render; voila log:\n{server_log}\nconsole: {console[-20:]}") from exc
            # the page is labelled as the offline demo and starts idle
            expect(page.locator(".studio-banner")).to_contain_text("离线演示 Offline demo")
            for name in BACKENDS:
                expect(page.locator(f".poem-col-{name} .poem-idle")).to_be_visible()
            # backends finish loading in the background: every state pill leaves "loading"
            for name in BACKENDS:
                expect(page.locator(f".poem-col-{name} .col-header .backend-state")).to_be_visible(timeout=300_000)
            expect(page.locator(".poem-col-gemini .col-header .backend-state")).to_have_text("offline replay")
            expect(page.locator(".poem-col-base .col-header .backend-state")).to_have_text("ready")
            expect(page.locator(".poem-col-lora .col-header .backend-state")).to_have_text("ready")

            page.locator(f".sample-{Path(SAMPLE).stem.replace('_', '-')}").click()
            expect(page.locator(".photo-caption")).to_contain_text(SAMPLE, timeout=60_000)
            expect(page.locator(".photo-preview")).to_be_visible()
            page.locator(".generate-button").click()

            # every column fills (a card: a poem, a parse message or an error) — the spinner goes away
            for name in BACKENDS:
                expect(page.locator(f".poem-col-{name} .poem-card")).to_be_visible(timeout=600_000)
                expect(page.locator(f".poem-col-{name} .poem-busy")).to_have_count(0)
            expect(page.locator(".demo-status")).to_contain_text("完成", timeout=60_000)

            # Gemini (replay) gives a real poem with its 格律 badges
            gemini = page.locator(".poem-col-gemini .poem-card")
            lines = page.locator(".poem-col-gemini .poem-card .poem-line")
            assert lines.count() >= 4
            assert all(CJK.search(text) for text in lines.all_inner_texts())
            expect(page.locator(".poem-col-gemini .meter-badge").first).to_be_visible()
            expect(page.locator(".poem-col-gemini .poem-type-badge")).to_be_visible()
            assert CJK.search(gemini.inner_text())
            # the tiny models' columns show their text or a clear parse message, never "unavailable"
            for name in ("base", "lora"):
                card = page.locator(f".poem-col-{name} .poem-card")
                text = card.inner_text()
                assert CJK.search(text), f"{name}: {text[:200]}"
                assert card.locator(".poem-line").count() > 0 or "未能解析" in text or card.locator(".error-title").count() > 0, text[:300]
                assert "unavailable" not in text, f"{name} did not load: {text[:300]}"
            # Voilà's template scrolls inside a container, so grow the viewport to the whole content for the shot
            height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))")
            page.set_viewport_size({"width": 1500, "height": max(1200, min(int(height) + 40, 8000))})
            page.locator(".poem-col-gemini .poem-card").scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let fonts and layout settle
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # 竖排: the poem switches to the vertical right-to-left layout
            page.locator(".poem-studio .widget-checkbox", has_text="竖排").locator("input").check()
            expect(page.locator(".poem-col-gemini .poem-body.vertical")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "demo-vertical.png"), full_page=True)
            # a bad upload gives a message and the page keeps working
            with page.expect_file_chooser(timeout=30_000) as chooser:  # ipywidgets' file input is not in the DOM
                page.locator(".photo-upload").click()
            chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo at all"}])
            expect(page.locator(".demo-status")).to_contain_text("bad upload", timeout=60_000)
            expect(page.locator(".photo-caption")).to_contain_text(SAMPLE)
            page.locator(".sample-dahlia-flower").click()
            expect(page.locator(".photo-caption")).to_contain_text("dahlia_flower.jpg", timeout=60_000)
        finally:
            browser.close()
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 20_000
