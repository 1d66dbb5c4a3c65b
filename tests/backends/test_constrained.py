"""格律-constrained generation through the Qwen backends: every answer parses and passes meter.check, results say
they were constrained, the budget is raised to the constraint's minimum, engines are kept per form, and a form the
constraint cannot hold fails clearly per request."""

from __future__ import annotations

import pytest

from poemlib import backends as bk
from poemlib.backends.constraint import ConstraintEngines
from poemlib.config import SAMPLE_DIR
from poemlib.meter import check
from poemlib.schema import GenerationResult, PoemRequest

FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")
PHOTOS = [SAMPLE_DIR / "cat_chelsea.jpg", SAMPLE_DIR / "rocket_launch_dusk.jpg"]
DECODINGS = {"greedy": (0.0, None), "sampled": (1.0, 3)}


def assert_constrained_pass(result: GenerationResult, poem_type: str | None, *, poem_only: bool) -> None:
    """A constrained result: parsed, and a poem of the requested type passing form, 平仄 and rhyme (or unfit)."""
    assert result.constrained, result
    assert result.annotation is not None, (result.error_kind, result.error_message, result.raw_text[:300])
    annotation = result.annotation
    if not annotation.create_condition:
        assert not poem_only, result.raw_text
        return
    assert poem_type is None or annotation.poem_type == poem_type
    report = check(annotation.poem_type, annotation.poem_content, annotation.poem_title)
    assert report.form_ok and report.tone_ok and report.rhyme_ok, (annotation.poem_content, [v.short() for v in report.violations])


@pytest.fixture()
def load(tiny_qwen_dir, backends_config, random_adapter, tmp_path):
    """base and lora over one engine (random adapter; no sampling filters, so a sampled row costs one multinomial)."""

    def make(*, allow_unfit: bool = True) -> dict:
        config = backends_config(tmp_path, model_dir=tiny_qwen_dir, adapter_dir=random_adapter)
        text = config.read_text().replace("top_p: 0.9", "top_p: 1.0").replace("top_k: 50", "top_k: 0")
        config.write_text(text)
        loaded = bk.load_backends(["base", "lora"], config=config)
        engine = loaded["base"].engine
        if not allow_unfit:
            engine.constraints = ConstraintEngines(engine.tokenizer, engine.constraints.logits_size, allow_unfit=False)
        return loaded

    return make


def test_constrained_greedy_answers_pass_and_say_so(load) -> None:
    base = load()["base"]
    request = PoemRequest(poem_type="五言绝句", constrain=True)  # the profile caps requests at 24 tokens
    results = base.generate(PHOTOS, request)
    need = base.engine.constraints.minimum_tokens(request)
    assert need > 24
    for result in results:
        assert_constrained_pass(result, "五言绝句", poem_only=False)
        assert 24 < result.usage.output_tokens <= need  # budget raised to the constraint's minimum, answer finished
    plain = base.generate(PHOTOS[:1], PoemRequest(poem_type="五言绝句"))[0]
    assert plain.constrained is False and plain.usage.output_tokens <= 24


def test_engines_are_kept_per_form_and_processors_are_fresh(load) -> None:
    engines = load()["base"].engine.constraints
    request = PoemRequest(poem_type="七言绝句", constrain=True)
    first, second = engines.call_for(request, 300), engines.call_for(request, 300)
    assert first.processor is not second.processor and first.processor.engine is second.processor.engine
    assert engines.engine_for(PoemRequest(poem_type="五言绝句")) is not first.processor.engine
    low = engines.call_for(request, 10)
    assert (low.raised_from, low.max_new_tokens) == (10, engines.minimum_tokens(request))
    assert engines.call_for(request, 400).raised_from is None


def test_a_form_the_constraint_cannot_hold_fails_each_image_clearly(load) -> None:
    base = load()["base"]
    results = base.generate(PHOTOS, PoemRequest(poem_type="词", cipai="不存在的词牌", constrain=True))
    assert [r.error_kind for r in results] == ["generation_error"] * 2
    assert all("格律约束" in r.error_message and "词" in r.error_message for r in results)


def test_gemini_ignores_the_constraint_and_says_so(gemini_replay_server) -> None:
    backend = bk.GeminiBackend("gemini", "Gemini (replay)", api_key="test", base_url=gemini_replay_server.base_url)
    result = backend.generate([PHOTOS[0]], PoemRequest(constrain=True))[0]
    assert result.ok and result.constrained is False


@pytest.mark.slow
@pytest.mark.parametrize("poem_type", FORMS)
def test_every_form_passes_greedy_and_sampled_base_and_lora(load, poem_type: str) -> None:
    loaded = load(allow_unfit=False)  # every row a poem, so the meter check always has something to judge
    for name in ("base", "lora"):
        for temperature, seed in DECODINGS.values():
            request = PoemRequest(poem_type=poem_type, constrain=True, temperature=temperature, seed=seed)
            for result in loaded[name].generate(PHOTOS, request):
                assert_constrained_pass(result, poem_type, poem_only=True)


@pytest.mark.slow
def test_the_model_may_pick_the_form_or_call_the_photo_unfit(load) -> None:
    loaded = load()
    for name in ("base", "lora"):
        for result in loaded[name].generate(PHOTOS, PoemRequest(constrain=True, temperature=1.0, seed=5)):
            assert_constrained_pass(result, None, poem_only=False)
