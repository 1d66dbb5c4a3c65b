"""StudioController without widgets: selection, the request from the customisation fields, concurrent columns, reports.

The offline test drives the real offline backends (replayed Gemini, tiny base Qwen, tiny Qwen + a random LoRA).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from poemlib import backends as bk
from poemlib.config import SAMPLE_DIR
from poemlib.demo import ControllerEvents, StudioController, meter_report
from poemlib.meter import check_annotation
from poemlib.samples import reference_by_name
from poemlib.schema import Annotation, GenerationResult
from tests.demo.helpers import (
    LIBAI,
    FakeBackend,
    RecordingBackend,
    make_random_lora,
    poem_result,
    wait_for,
    write_tiny_backends,
)

SAMPLE = "cat_chelsea.jpg"


class RecordingEvents(ControllerEvents):
    """Every event the controller sends, in order (as a view would receive them)."""

    def __init__(self, controller_ref: list[StudioController]) -> None:
        self.controller_ref = controller_ref
        self.log: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *event) -> None:
        with self._lock:
            self.log.append(event)

    def message(self, level: str, text: str) -> None:
        self._add("message", level, text)

    def backends_loaded(self) -> None:
        self._add("loaded")

    def photo_changed(self) -> None:
        self._add("photo", self.controller_ref[0].photo_name)

    def column_changed(self, name: str) -> None:
        self._add("column", name, self.controller_ref[0].columns[name].phase)

    def running_changed(self, running: bool) -> None:
        self._add("running", running)

    def of(self, kind: str) -> list[tuple]:
        return [event[1:] for event in self.log if event[0] == kind]


def recorded_controller(backends, **kwargs) -> tuple[StudioController, RecordingEvents]:
    """A controller whose events are recorded from the start."""
    ref: list[StudioController] = []
    events = RecordingEvents(ref)
    ctrl = StudioController(backends, events=events, start=False, **kwargs)
    ref.append(ctrl)
    return ctrl.start(), events


def test_importing_the_demo_and_its_controller_loads_no_widgets() -> None:
    code = "import sys, poemlib.demo, poemlib.demo.controller; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_request_is_built_from_the_customisation_fields(no_model_loading) -> None:
    ctrl = StudioController({"gemini": FakeBackend("gemini", poem_result())})
    assert (ctrl.customisation.temperature, ctrl.customisation.max_new_tokens, ctrl.customisation.seed) == (0.7, 512, 0)
    ctrl.customise(poem_type="词", cipai="浣溪沙", mood="  思乡 ", extra_instruction="", temperature=0.3, max_new_tokens=256, seed=7)
    request = ctrl.request()
    assert (request.poem_type, request.cipai, request.mood, request.extra_instruction) == ("词", "浣溪沙", "思乡", None)
    assert (request.temperature, request.max_new_tokens, request.seed) == (0.3, 256, 7)
    # a 词牌 left in the field is dropped once the 体裁 is not 词
    ctrl.customise(poem_type="七言绝句")
    assert ctrl.request().cipai is None and ctrl.request().poem_type == "七言绝句"
    # "" means any form
    ctrl.customise(poem_type="")
    assert ctrl.request().poem_type is None
    with pytest.raises(TypeError, match="colour"):
        ctrl.customise(colour="red")


def test_invalid_request_no_photo_and_no_backend_are_refused_with_a_message(no_model_loading) -> None:
    fake = FakeBackend("gemini", poem_result())
    ctrl = StudioController({"gemini": fake})
    assert ctrl.generate() == {} and ctrl.last_message == ("warn", "请先选择照片 choose a sample photo or upload one first")
    ctrl.select_sample(SAMPLE)
    ctrl.customise(temperature=3.0)
    assert ctrl.generate() == {}
    level, text = ctrl.last_message
    assert level == "error" and text.startswith("请求无效 invalid request") and "temperature" in text
    ctrl.customise(temperature=0.5)
    ctrl.set_enabled("gemini", False)
    assert ctrl.generate() == {} and "switch on at least one backend" in ctrl.last_message[1]
    with pytest.raises(KeyError, match="no backend 'gpt'; known: \\['gemini'\\]"):
        ctrl.set_enabled("gpt", True)
    with pytest.raises(RuntimeError, match="switch on at least one backend"):
        ctrl.generate_sync()
    assert not fake.calls and ctrl.columns["gemini"].phase == "idle"


def test_columns_go_busy_then_fill_each_on_its_own(no_model_loading) -> None:
    gate = threading.Event()
    fakes = {
        "gemini": FakeBackend("gemini", poem_result()),
        "base": FakeBackend("base", error=RuntimeError("CUDA out of memory (simulated)")),
        "lora": FakeBackend("lora", poem_result(), gate=gate),
    }
    ctrl, events = recorded_controller(fakes)
    ctrl.select_sample(SAMPLE)
    futures = ctrl.generate()
    assert wait_for(lambda: futures["gemini"].done() and futures["base"].done())
    assert wait_for(lambda: ctrl.columns["base"].phase == "failed")
    assert ctrl.columns["lora"].phase == "busy" and ctrl.running()
    # a second run while one is going is refused, and changes nothing
    assert ctrl.generate() == {} and "still generating" in ctrl.last_message[1]
    gemini = ctrl.columns["gemini"]
    assert gemini.phase == "done" and gemini.result.annotation.poem_content == LIBAI
    assert gemini.report is not None and gemini.report.form_ok and gemini.report.rhyme_group == "上平声十五删"
    base = ctrl.columns["base"]
    assert base.result.error_kind == "generation_error" and base.result.error_message == "RuntimeError: CUDA out of memory (simulated)"
    assert base.report is None
    gate.set()
    assert futures["lora"].result(10).ok
    assert wait_for(lambda: not ctrl.running())
    assert ctrl.columns["lora"].phase == "done" and set(ctrl.results()) == {"gemini", "base", "lora"}
    # each column: busy first, then its answer; the run starts and ends once
    for name, final in (("gemini", "done"), ("base", "failed"), ("lora", "done")):
        assert [phase for col, phase in events.of("column") if col == name] == ["busy", final]
    assert events.of("running") == [(True,), (False,)]
    assert events.of("photo") == [(SAMPLE,)]
    assert events.log[-1][0] == "message" and "完成 done in" in events.log[-1][2] and "2/3 poems" in events.log[-1][2]


def test_meter_report_is_none_without_a_poem_or_when_the_check_fails(monkeypatch) -> None:
    assert meter_report(GenerationResult(backend="base", error_kind="invalid_json", raw_text="{"), "pingshui") is None
    unfit = GenerationResult(backend="gemini", annotation=Annotation(create_condition=False, poem_content="文字扫描件。", poem_explanation="无景。"))
    assert meter_report(unfit, "pingshui") is None
    report = meter_report(poem_result(), "pingshui")
    assert report is not None and report.poem_type == "七言绝句" and report.rhyme_chars == ["间", "还", "山"]

    import poemlib.meter

    def broken(*args, **kwargs):
        raise RuntimeError("checker bug")

    monkeypatch.setattr(poemlib.meter, "check", broken)
    assert meter_report(poem_result(), "pingshui") is None
    # the column still gets the poem, without marks
    ctrl = StudioController({"gemini": FakeBackend("gemini", poem_result())})
    result = ctrl.generate_sync(SAMPLE, timeout=10)["gemini"]
    assert result.annotation.poem_content == LIBAI and ctrl.columns["gemini"].phase == "done" and ctrl.columns["gemini"].report is None


def test_uploads_through_the_controller(no_model_loading) -> None:
    ctrl, events = recorded_controller({"gemini": FakeBackend("gemini", poem_result())}, config={"max_upload_mb": 0.001})
    assert ctrl.load_upload(b"x" * 2000, "big.jpg") is False
    assert ctrl.last_message == ("error", "上传失败 upload refused: big.jpg is 0.0 MB, over the 0.001 MB limit")
    assert ctrl.load_upload(b"hello", "notes.txt") is False and ctrl.last_message[1].startswith("图片无法使用 bad upload: notes.txt")
    assert ctrl.photo is None and events.of("photo") == []


def test_a_failed_background_load_fails_every_column(monkeypatch) -> None:
    import poemlib.backends

    def broken(*args, **kwargs):
        raise RuntimeError("config exploded")

    monkeypatch.setattr(poemlib.backends, "load_backends", broken)
    ctrl, events = recorded_controller(None, profile="offline")
    assert wait_for(ctrl.loaded)
    assert str(ctrl.load_error()) == "config exploded" and ctrl.statuses() == {}
    assert wait_for(lambda: ("loaded",) in events.log)
    assert ctrl.last_message == ("error", "模型加载失败 loading backends failed: RuntimeError: config exploded")
    results = ctrl.generate_sync(SAMPLE, timeout=10)
    assert set(results) == {"gemini", "base", "lora"}
    assert all(r.error_message == "RuntimeError: config exploded" for r in results.values())
    assert {col.phase for col in ctrl.columns.values()} == {"failed"}


# ---------------------------------------------------------------------------
# The real offline backends
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_backends(tiny_qwen_dir, tmp_path_factory):
    """Replayed Gemini, tiny base Qwen and tiny Qwen + a random LoRA adapter, from a backends.yaml of their own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's matrices are too small to split (see configs/backends.yaml)
    root = tmp_path_factory.mktemp("demo-backends")
    adapter = make_random_lora(tiny_qwen_dir, root / "lora")
    config = write_tiny_backends(root / "backends.yaml", tiny_qwen_dir, adapter, generation={"top_p": 0.9, "top_k": 50},
                                 batch_size=1, dtype="auto", max_new_tokens_cap=24)
    bk.clear_backends()
    loaded = bk.load_backends(["gemini", "base", "lora"], profile="offline", config=config)
    yield {name: RecordingBackend(backend) for name, backend in loaded.items()}
    bk.clear_backends()
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_offline_backends_fill_every_column(offline_backends) -> None:
    ctrl, events = recorded_controller(offline_backends, samples=[SAMPLE_DIR / SAMPLE, SAMPLE_DIR / "dahlia_flower.jpg"])
    assert {name: status.state for name, status in ctrl.statuses().items()} == {"gemini": "offline replay", "base": "ready", "lora": "ready"}
    assert ctrl.label_of("lora") == "lora (tiny)"
    ctrl.select_sample("cat_chelsea")
    ctrl.customise(poem_type="七言绝句", mood="闲适", temperature=0.8, max_new_tokens=24, seed=11)
    results = ctrl.generate_sync(timeout=600)
    assert set(results) == {"gemini", "base", "lora"}
    for name, backend in offline_backends.items():
        (request,) = backend.requests
        assert (request.poem_type, request.mood, request.temperature, request.max_new_tokens, request.seed) == ("七言绝句", "闲适", 0.8, 24, 11)
        column = ctrl.columns[name]
        assert column.result is results[name] and column.result.backend == name
        assert column.phase == ("done" if column.result.ok else "failed")
        assert column.result.latency_s > 0
    # Gemini replays the recorded poem of this photo, and its column carries that poem's 格律 report
    reference = reference_by_name()[SAMPLE]
    gemini = ctrl.columns["gemini"]
    assert gemini.phase == "done"
    assert (gemini.result.annotation.poem_title, gemini.result.annotation.poem_type) == (reference.poem_title, reference.poem_type)
    assert gemini.report is not None and gemini.report == check_annotation(gemini.result.annotation)
    assert gemini.report.title == reference.poem_title and len(gemini.report.lines) == 4
    # the tiny models write noise: a parse failure names its kind; a report comes only with a parsed poem
    for name in ("base", "lora"):
        column = ctrl.columns[name]
        assert 0 < column.result.usage.output_tokens <= 24  # the request's length reached the model
        assert column.result.ok or (column.result.error_kind and column.result.error_message)
        assert column.report == (meter_report(column.result, "pingshui") if column.result.ok else None)
    assert events.of("running") == [(True,), (False,)]
    assert "/3 poems" in ctrl.last_message[1]

    # the same seed samples the same text again; base only, the others stay as they were
    again = ctrl.generate_sync(backends=["base"], timeout=600)
    assert list(again) == ["base"] and again["base"].raw_text == results["base"].raw_text
    assert ctrl.columns["lora"].result is results["lora"]
    assert len(offline_backends["base"].requests) == 2 and len(offline_backends["lora"].requests) == 1
