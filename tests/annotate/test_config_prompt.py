"""Prompt files, their version, the config file and the request built from them."""

from __future__ import annotations

import re

from poemlib import annotate as ann
from poemlib import gemini
from poemlib.config import load_config


def test_prompt_files_are_versioned_and_complete() -> None:
    prompt = ann.load_prompt()
    assert re.fullmatch(r"v1\+[0-9a-f]{8}", prompt.version)
    guide = (ann.PROMPTS_DIR / "guide_v1.md").read_text(encoding="utf-8")
    system = (ann.PROMPTS_DIR / "system_v1.md").read_text(encoding="utf-8")
    # The fixed prefix: system prompt first, then the guide; the user turn is short.
    assert prompt.system.startswith(system.strip()[:200]) and guide.strip()[-200:] in prompt.system
    assert len(prompt.user) < 120
    for needle in ("五言绝句平仄谱", "七言绝句平仄谱", "律诗", "粘", "失对", "平水韵", "孤平", "三平尾", "对仗", "比兴", "用典", "借景抒情", "不宜创作"):
        assert needle in guide, needle
    cipai = re.findall(r"^\d+\. \*\*(.+?)\*\*", guide, flags=re.MULTILINE)
    assert len(cipai) >= 15 and {"浣溪沙", "菩萨蛮", "水调歌头", "念奴娇"} <= set(cipai)
    for field in ("create_condition", "poem_type", "poem_title", "poem_content", "poem_explanation"):
        assert field in system


def test_prompt_version_changes_with_the_text(tmp_path) -> None:
    cfg = ann.load_annotate_config()
    system = tmp_path / "system.md"
    system.write_text((ann.PROMPTS_DIR / "system_v1.md").read_text(encoding="utf-8") + "\n补充一句。", encoding="utf-8")
    changed = cfg.model_copy(update={"prompts": cfg.prompts.model_copy(update={"system": str(system)})})
    assert ann.load_prompt(changed).version != ann.load_prompt(cfg).version


def test_config_file_is_complete() -> None:
    raw = load_config("annotate")
    cfg = ann.load_annotate_config()  # extra="forbid": a typo in the YAML fails here
    assert cfg.model == "gemini-2.5-pro" and raw["prices"]["input"] == 1.25 and cfg.prices.batch_discount == 0.5
    for key in ("model", "temperature", "thinking_budget", "max_output_tokens", "image_max_pixels", "concurrency", "rpm", "timeout_s", "max_attempts", "prices"):
        assert key in raw, key


def test_request_shape_is_structured_json_with_fixed_system_prefix() -> None:
    cfg = ann.load_annotate_config()
    prompt = ann.load_prompt(cfg)
    gen = ann.generation_config(cfg, prompt)
    assert gen.response_mime_type == "application/json"
    assert gen.response_schema is not None and gen.system_instruction == prompt.system
    assert gen.thinking_config.thinking_budget == cfg.thinking_budget and gen.max_output_tokens == cfg.max_output_tokens
    contents = gemini.user_contents(b"\xff\xd8jpeg", prompt.user)
    parts = contents[0].parts
    assert parts[0].inline_data.mime_type == "image/jpeg" and parts[1].text == prompt.user
    rest = ann.rest_request(cfg, prompt, b"\xff\xd8jpeg")
    assert rest["generationConfig"]["responseMimeType"] == "application/json" and rest["systemInstruction"]["parts"][0]["text"] == prompt.system
