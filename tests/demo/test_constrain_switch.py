"""The studio's 格律约束 switch: it reaches the request, the Qwen columns answer under the constraint, and the cards
say which answers were constrained."""

from __future__ import annotations

import pytest

from poemlib import backends as bk
from poemlib.config import SAMPLE_DIR
from poemlib.demo import StudioController, build_app
from poemlib.meter import check_annotation
from tests.demo.helpers import (
    FakeBackend,
    make_random_lora,
    poem_result,
    write_tiny_backends,
)


def test_the_switch_starts_off_and_sets_constrain_on_every_request(no_model_loading) -> None:
    fakes = {name: FakeBackend(name, poem_result()) for name in ("gemini", "base", "lora")}
    app = build_app(backends=fakes)
    assert app.constrain.value is False and "constrain-toggle" in app.constrain._dom_classes
    app.generate_sync("cat_chelsea", timeout=10)
    app.constrain.value = True
    assert app.current_request().constrain is True
    app.generate_sync("cat_chelsea", timeout=10)
    assert [[call[1].constrain for call in fakes[name].calls] for name in fakes] == [[False, True]] * 3


def test_the_switch_can_start_on_from_the_demo_config(no_model_loading) -> None:
    ctrl = StudioController({"base": FakeBackend("base", poem_result())}, config={"defaults": {"constrain": True}})
    assert ctrl.customisation.constrain is True and ctrl.request().constrain is True
    ctrl.customise(constrain=False)
    assert ctrl.request().constrain is False


def test_a_constrained_answer_carries_the_badge_and_others_do_not(no_model_loading) -> None:
    constrained = poem_result("base").model_copy(update={"constrained": True})
    app = build_app(backends={"gemini": FakeBackend("gemini", poem_result()), "base": FakeBackend("base", constrained)})
    app.generate_sync("cat_chelsea", timeout=10)
    assert 'data-check="constrained"' in app.cards["base"].value and "格律约束" in app.cards["base"].value
    assert 'data-check="constrained"' not in app.cards["gemini"].value


@pytest.mark.slow
def test_qwen_columns_answer_under_the_constraint(tiny_qwen_dir, tmp_path) -> None:
    import torch

    threads = torch.get_num_threads()
    adapter = make_random_lora(tiny_qwen_dir, tmp_path / "lora")
    config = write_tiny_backends(tmp_path / "backends.yaml", tiny_qwen_dir, adapter, generation={"top_p": 1.0, "top_k": 0},
                                 batch_size=1, dtype="auto", max_new_tokens_cap=24)
    bk.clear_backends()
    try:
        app = build_app(backends=bk.load_backends(["gemini", "base", "lora"], config=config), samples=[SAMPLE_DIR / "cat_chelsea.jpg"])
        app.poem_type.value = "七言绝句"
        app.constrain.value = True
        app.seed.value = 2
        results = app.generate_sync("cat_chelsea", timeout=900)
    finally:
        bk.clear_backends()
        torch.set_num_threads(threads)
    assert results["gemini"].constrained is False and 'data-check="constrained"' not in app.cards["gemini"].value
    for name in ("base", "lora"):
        result, column = results[name], app.controller.columns[name]
        assert result.constrained and result.ok, (result.error_kind, result.error_message)
        assert 'data-check="constrained"' in app.cards[name].value
        if result.annotation.create_condition:  # the tiny model may call the photo unfit: that stays possible
            report = check_annotation(result.annotation)
            assert result.annotation.poem_type == "七言绝句" and report.form_ok and report.tone_ok and report.rhyme_ok
            assert column.report is not None and not column.report.violations
