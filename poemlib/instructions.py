"""The pool of user instructions shared by training data, evaluation and the demo (configs/instructions.yaml).

`render_instruction(request)` turns a `PoemRequest` (体裁 / 词牌 / mood / extra instruction) into the user text that
follows the image; `request_for_annotation(annotation, rng)` draws a customisation that *matches* a training target,
so the tuned model learns to follow the demo's customisation. The chat around that text is LLaMA-Factory's
`qwen2_vl` template with its default system prompt (`SYSTEM_PROMPT`), user content `"<image>" + instruction`
(image first, no separator), which is also what Qwen2.5-VL's own chat template renders for
`[{"type": "image"}, {"type": "text", "text": instruction}]`.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from poemlib.config import load_config
from poemlib.schema import POEM_TYPES, Annotation, PoemRequest

# LLaMA-Factory's qwen2_vl template injects this when the data has no system turn (ours never has one);
# Qwen2.5-VL's chat template uses the same default. Backends must render the identical prompt.
SYSTEM_PROMPT = "You are a helpful assistant."
# The placeholder LLaMA-Factory replaces by the image's vision tokens; it opens the user turn.
IMAGE_PLACEHOLDER = "<image>"

_KINDS = ("generic", "poem_type", "cipai", "mood_only", "mood_clause")


@lru_cache(maxsize=4)
def _pool(name: str = "instructions") -> dict[str, Any]:
    """The instruction pool config, checked for the keys rendering needs."""
    cfg = load_config(name)
    for key in (*_KINDS, "extra", "reminder"):
        if not cfg.get(key):
            raise ValueError(f"configs/{name}.yaml: missing or empty {key!r}")
    return cfg


def instruction_pool(name: str = "instructions") -> dict[str, Any]:
    """A copy of the instruction pool configuration (templates, reminder, draw probabilities, moods)."""
    import copy

    return copy.deepcopy(_pool(name))


def _pick(templates: list[str], variant: int | None, rng: random.Random | None) -> str:
    """Template `variant` (modulo the list), a random one when only rng is given, else the first."""
    if variant is not None:
        return templates[variant % len(templates)]
    if rng is not None:
        return rng.choice(templates)
    return templates[0]


def render_instruction(
    request: PoemRequest | None = None,
    variant: int | None = None,
    rng: random.Random | None = None,
    *,
    pool: str = "instructions",
) -> str:
    """The user text after the image for a request: lead (+ mood clause) (+ extra) + the fixed JSON reminder.

    variant selects template `variant % len` of each list used; rng draws them when variant is None; with neither,
    the first templates are used (the deterministic default for evaluation and the demo).
    """
    cfg = _pool(pool)
    request = request or PoemRequest()
    cipai = (request.cipai or "").strip() or None
    mood = (request.mood or "").strip() or None
    extra = (request.extra_instruction or "").strip() or None
    poem_type = request.poem_type or ("词" if cipai else None)
    parts: list[str] = []
    if cipai:
        parts.append(_pick(cfg["cipai"], variant, rng).format(cipai=cipai))
    elif poem_type:
        parts.append(_pick(cfg["poem_type"], variant, rng).format(poem_type=poem_type))
    if mood:
        if parts:
            parts.append(_pick(cfg["mood_clause"], variant, rng).format(mood=mood))
        else:
            parts.append(_pick(cfg["mood_only"], variant, rng).format(mood=mood))
    if not parts:
        parts.append(_pick(cfg["generic"], variant, rng))
    if extra:
        parts.append(cfg["extra"].format(extra_instruction=extra))
    parts.append(cfg["reminder"].strip())
    return "".join(_end_sentence(p) for p in parts[:-1]) + parts[-1]


def _end_sentence(text: str) -> str:
    """Make sure a fragment ends with sentence punctuation before the next one is appended."""
    text = text.strip()
    return text if text.endswith(("。", "！", "？", "；", ".", "!", "?")) else text + "。"


def _cipai_of(title: str | None) -> str | None:
    """The 词牌 of a 词 title ('词牌·题目'), via poemlib.meter.parse_cipai (title split on '·' until meter exists)."""
    if not title:
        return None
    try:
        from poemlib.meter import parse_cipai
    except ImportError:
        head = title.replace("・", "·").replace("•", "·").split("·", 1)[0].strip()
        return head if head and head != title.strip() else None
    result = parse_cipai(title)
    if isinstance(result, tuple):  # tolerate (cipai, subtitle) style returns
        result = result[0] if result else None
    if result is not None and not isinstance(result, str):
        result = getattr(result, "cipai", None) or getattr(result, "name", None)
    return result.strip() if isinstance(result, str) and result.strip() else None


def common_cipai(pool: str = "instructions") -> list[str]:
    """The common 词牌 a request may name (configs/instructions.yaml `common_cipai`), each checked against the engine."""
    from poemlib.meter import parse_cipai

    names = [str(n).strip() for n in _pool(pool).get("common_cipai") or []]
    unknown = [n for n in names if parse_cipai(n) != n]
    if unknown:
        raise ValueError(f"configs/{pool}.yaml: common_cipai names 词牌 the 格律 engine does not know (or aliases): {unknown}")
    return names


def moods_in(text: str, pool: str = "instructions") -> list[str]:
    """Mood keywords of the pool that occur in a text, in pool order."""
    return [m for m in _pool(pool).get("moods", []) if m and m in text]


def request_for_annotation(annotation: Annotation, rng: random.Random, *, pool: str = "instructions") -> PoemRequest:
    """Draw a customisation that the target annotation satisfies (generic, its 体裁 / 词牌, a mood in its 赏析)."""
    cfg = _pool(pool)
    draw = {"generic": 0.5, "poem_type": 0.3, "mood": 0.2, "cipai_given_ci": 0.7, "type_with_mood": 0.5, "unfit_poem_type": 0.3}
    draw.update(cfg.get("draw") or {})
    if not annotation.create_condition:
        # An unfit photo stays unfit whatever was asked: sometimes ask for a form to teach that.
        if rng.random() < float(draw["unfit_poem_type"]):
            return PoemRequest(poem_type=rng.choice(POEM_TYPES))
        return PoemRequest()
    total = float(draw["generic"]) + float(draw["poem_type"]) + float(draw["mood"])
    u = rng.random() * (total or 1.0)
    if u < float(draw["generic"]):
        return PoemRequest()
    cipai = _cipai_of(annotation.poem_title) if annotation.poem_type == "词" else None
    if u < float(draw["generic"]) + float(draw["poem_type"]):
        if cipai and rng.random() < float(draw["cipai_given_ci"]):
            return PoemRequest(poem_type="词", cipai=cipai)
        return PoemRequest(poem_type=annotation.poem_type)
    found = moods_in(annotation.poem_explanation, pool)
    if not found:
        return PoemRequest(poem_type=annotation.poem_type) if rng.random() < 0.5 else PoemRequest()
    mood = rng.choice(found)
    if rng.random() < float(draw["type_with_mood"]):
        return PoemRequest(poem_type=annotation.poem_type, mood=mood)
    return PoemRequest(mood=mood)


def request_matches(request: PoemRequest, annotation: Annotation) -> bool:
    """Whether an annotation satisfies a request's 体裁 / 词牌 / mood (used to check drawn training prompts)."""
    if not annotation.create_condition:
        return True
    if request.poem_type and request.poem_type != annotation.poem_type:
        return False
    if request.cipai and (_cipai_of(request.cipai) or request.cipai) != _cipai_of(annotation.poem_title):
        return False  # compared as canonical names: a request for 丑奴儿 is met by a 采桑子
    return not (request.mood and request.mood not in annotation.poem_explanation)
