"""load_backends: base and lora share one model, caching, a training config names the weights, failures are results."""

from __future__ import annotations

import pytest
import yaml

from poemlib import backends as bk
from poemlib.backends import registry
from poemlib.config import SAMPLE_DIR, ConfigError
from poemlib.schema import PoemRequest
from tests.fixtures import MIXED_ASPECT_PHOTOS

PHOTOS = list(MIXED_ASPECT_PHOTOS[:2])


def test_lora_and_base_share_one_model_and_differ(tiny_qwen_dir, random_adapter, tmp_path, backends_config) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = backends_config(tmp_path, model_dir=tiny_qwen_dir, adapter_dir=random_adapter)
    loaded = bk.load_backends(["base", "lora"], profile="offline", config=config)
    base, lora = loaded["base"], loaded["lora"]
    assert base.status().ready and lora.status().ready, (base.status(), lora.status())
    assert str(random_adapter) in lora.status().detail and "adapter disabled" in base.status().detail
    assert base.engine is lora.engine and base.model is lora.model
    assert len(registry._ENGINES) == 1

    # one copy of the base weights: the PeftModel's non-LoRA parameters are exactly a plain model's, stored once
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny_qwen_dir))
    n_plain = sum(p.numel() for p in plain.parameters())
    named = list(lora.model.named_parameters())
    base_params = [p for n, p in named if "lora_" not in n]
    lora_params = [p for n, p in named if "lora_" in n]
    assert lora_params, "the adapter was not attached"
    assert sum(p.numel() for p in base_params) == n_plain
    assert len({p.data_ptr() for p in base_params}) == len(base_params)
    assert sum(p.numel() for p in lora.model.parameters()) == n_plain + sum(p.numel() for p in lora_params)

    photos = [SAMPLE_DIR / p for p in PHOTOS]
    request = PoemRequest(max_new_tokens=24)
    out_base = base.generate(photos, request)
    out_lora = lora.generate(photos, request)
    assert [r.raw_text for r in out_base] != [r.raw_text for r in out_lora]
    assert {r.backend for r in out_base} == {"base"} and {r.backend for r in out_lora} == {"lora"}

    # the base answers with the adapter disabled: exactly what the plain model says
    plain_engine = bk.QwenEngine(tiny_qwen_dir, device="cpu", max_new_tokens_cap=24)
    assert [r.raw_text for r in plain_engine.generate(photos, request, use_adapter=False, backend="p")] == [r.raw_text for r in out_base]
    # and the adapter is on again after a base call
    assert [r.raw_text for r in lora.generate(photos, request)] == [r.raw_text for r in out_lora]
    del plain
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def test_load_backends_is_cached(tiny_qwen_dir, random_adapter, tmp_path, backends_config) -> None:
    config = backends_config(tmp_path, model_dir=tiny_qwen_dir, adapter_dir=random_adapter)
    first = bk.load_backends(["base"], config=config)
    second = bk.load_backends("base,lora", config=config)
    assert first["base"] is second["base"]
    assert second["lora"].engine is second["base"].engine  # base loaded first still shares the adapter-wrapped model
    assert bk.load_backends(["lora", "base"], config=config)["lora"] is second["lora"]
    assert list(bk.load_backends(["lora", "base"], config=config)) == ["lora", "base"]  # the caller's order


def test_a_training_config_names_the_base_model_and_the_adapter(tiny_qwen_dir, random_adapter, tmp_path, backends_config, monkeypatch) -> None:
    """The real chain: the profile names a training config; the base model is its model_name_or_path and the adapter
    the output_dir `poemlib train` wrote to, with no path repeated in backends.yaml."""
    train = tmp_path / "my_train.yaml"
    train.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_qwen_dir), "output_dir": str(random_adapter), "template": "qwen2_vl"}))
    config = backends_config(tmp_path, model_dir=None, adapter_dir=None, profile="real", train_config=str(train),
                             base={"model_dir_env": "POEMLIB_TEST_BASE", "label": "base"},
                             lora={"adapter_dir_env": "POEMLIB_TEST_ADAPTER", "label": "lora"})
    monkeypatch.delenv("POEMLIB_TEST_BASE", raising=False)
    monkeypatch.delenv("POEMLIB_BASE_MODEL", raising=False)
    loaded = bk.load_backends(["base", "lora"], profile="real", config=config)
    assert loaded["lora"].status().ready, loaded["lora"].status()
    assert loaded["lora"].engine.adapter_dir == random_adapter
    assert loaded["base"].engine.model_dir == tiny_qwen_dir

    # an environment override wins over the training config (the one setting that swaps the model)
    bk.clear_backends()
    monkeypatch.setenv("POEMLIB_TEST_ADAPTER", str(tmp_path / "elsewhere"))
    lora = bk.load_backends(["lora"], profile="real", config=config)["lora"]
    assert lora.status().state == "adapter missing"
    assert str(tmp_path / "elsewhere") in lora.status().detail and f"poemlib train {train}" in lora.status().detail


def test_shipped_real_profile_reads_the_7b_training_config(tmp_path, monkeypatch) -> None:
    """The shipped real profile finds what `poemlib train qwen2_5vl_7b_lora` trains and writes; POEMLIB_BASE_MODEL,
    the one setting training also reads, swaps the base model."""
    from poemlib.config import BASE_MODEL_ENV, load_config, resolve_path

    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    profile = bk.load_profile("real")
    train = load_config(profile.train_config)
    assert registry.base_model_location(profile, "real") == train["model_name_or_path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert registry.adapter_location(profile) == resolve_path(train["output_dir"]) == resolve_path("work/train/qwen2_5vl_7b_lora")
    monkeypatch.setenv(BASE_MODEL_ENV, str(tmp_path / "tiny"))
    assert registry.base_model_location(profile, "real") == tmp_path / "tiny"


def test_adapter_from_notebook_04_loads_and_differs(tmp_path, backends_config) -> None:
    """Acceptance: the adapter written by `poemlib train tiny_cpu` (04) loads over the tiny base and changes answers."""
    from poemlib.config import WORK_DIR

    adapter = WORK_DIR / "train" / "tiny_lora"
    model_dir = WORK_DIR / "models" / "tiny-qwen2.5-vl"
    if not (adapter / "adapter_config.json").exists() or not (model_dir / "config.json").exists():
        pytest.skip("no adapter from 04 in work/train/tiny_lora (run `poemlib train tiny_cpu` first)")
    config = backends_config(tmp_path, model_dir=model_dir, adapter_dir=adapter)
    loaded = bk.load_backends(["base", "lora"], config=config)
    assert loaded["lora"].status().ready, loaded["lora"].status()
    photos = [SAMPLE_DIR / p for p in PHOTOS]
    request = PoemRequest(max_new_tokens=24)
    assert [r.raw_text for r in loaded["base"].generate(photos, request)] != [r.raw_text for r in loaded["lora"].generate(photos, request)]


def test_offline_gemini_from_load_backends(tmp_path, backends_config) -> None:
    from poemlib.samples import draft_by_name

    config = backends_config(tmp_path, model_dir=None, adapter_dir=None)
    gem = bk.load_backends(["gemini"], config=config)["gemini"]
    assert gem.status().state == "offline replay" and gem.status().ready
    assert gem.label == "Gemini (replay)"
    assert bk.load_backends(["gemini"], config=config)["gemini"] is gem
    result = gem.generate([SAMPLE_DIR / "coffee_cup.jpg"], PoemRequest())[0]
    assert result.ok and result.annotation == draft_by_name()["coffee_cup.jpg"]  # the replay's first answer: our draft


def test_backends_that_cannot_load_return_error_results(tmp_path, backends_config) -> None:
    config = backends_config(tmp_path, model_dir=tmp_path / "no-such-model", adapter_dir=tmp_path / "no-adapter")
    loaded = bk.load_backends(["base", "lora"], config=config)
    for name in ("base", "lora"):
        status = loaded[name].status()
        assert not status.ready and status.state == "model path missing"
        assert str(tmp_path / "no-such-model") in status.detail
        results = loaded[name].generate([SAMPLE_DIR / PHOTOS[0], b"xx"], PoemRequest())
        assert [r.error_kind for r in results] == ["generation_error", "generation_error"]
        assert all(r.backend == name and not r.ok and "model path missing" in r.error_message for r in results)
    assert bk.load_backends(["base"], config=config)["base"] is loaded["base"]


def test_missing_adapter_and_missing_key(tiny_qwen_dir, tmp_path, monkeypatch, backends_config) -> None:
    config = backends_config(tmp_path, model_dir=tiny_qwen_dir, adapter_dir=tmp_path / "none")
    loaded = bk.load_backends(["base", "lora"], config=config)
    assert loaded["base"].status().ready
    assert loaded["lora"].status().state == "adapter missing"
    assert str(tmp_path / "none") in loaded["lora"].status().detail
    assert loaded["lora"].generate([SAMPLE_DIR / PHOTOS[0]], PoemRequest())[0].error_kind == "generation_error"

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setattr("poemlib.gemini.resolve_api_key", lambda *a, **k: None)  # ignore a developer's .env
    real = backends_config(tmp_path, model_dir=tiny_qwen_dir, adapter_dir=None, profile="real",
                           gemini={"mode": "api", "api_key_env": "GEMINI_API_KEY", "label": "Gemini"})
    gem = bk.load_backends(["gemini"], profile="real", config=real)["gemini"]
    assert gem.status().state == "no key" and not gem.status().ready
    assert "GEMINI_API_KEY" in gem.status().detail
    assert gem.generate([SAMPLE_DIR / PHOTOS[0]], PoemRequest())[0].error_kind == "auth"


def test_unknown_backend_name_and_bad_config_are_refused(tmp_path, backends_config) -> None:
    config = backends_config(tmp_path, model_dir=None, adapter_dir=None)
    with pytest.raises(ValueError, match=r"unknown backend\(s\) \['gpt'\]; known: \['gemini', 'base', 'lora'\]"):
        bk.load_backends(["gpt"], config=config)
    with pytest.raises(ValueError, match="no profile 'gpu'; known: \\['offline'\\]"):
        bk.load_backends(["base"], profile="gpu", config=config)
    typo = backends_config(tmp_path, model_dir=None, adapter_dir=None, profile="typo", batchsize=4)
    with pytest.raises(ConfigError) as err:
        bk.load_backends(["base"], profile="typo", config=typo)
    assert str(typo) in str(err.value) and "batchsize" in str(err.value)
