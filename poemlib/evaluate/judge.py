"""The optional LLM judge: Gemini scores each poem against a written rubric (configs/judge_rubric.md), through
poemlib.gemini (one client, one retry path: 429 and 5xx are retried). Runs only with a real key; its scores are kept
in a table of their own and never mixed into the rule-based metrics."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from poemlib import gemini
from poemlib.config import resolve_path
from poemlib.evaluate.items import EvalItem
from poemlib.evaluate.settings import JudgeSettings, load_evaluate_settings
from poemlib.images import encode_jpeg, prepare_image
from poemlib.schema import extract_json_object

JUDGE_CRITERIA = ("image_relevance", "imagery", "fluency", "yijing")
JUDGE_COLUMNS = ["backend", "image", *JUDGE_CRITERIA, "rationale", "error"]


def judge_rubric(path: str | os.PathLike | None = None) -> str:
    """The written rubric sent as the judge's system instruction."""
    return resolve_path(path or JudgeSettings().rubric).read_text(encoding="utf-8")


def judge_response_schema() -> dict[str, Any]:
    """Gemini response schema of one judgement: four 1-5 scores and a short rationale."""
    props = {c: {"type": "INTEGER", "description": f"{c} score, 1-5"} for c in JUDGE_CRITERIA}
    props["rationale"] = {"type": "STRING", "description": "two or three sentences justifying the scores"}
    return {"type": "OBJECT", "properties": props, "required": [*JUDGE_CRITERIA, "rationale"],
            "propertyOrdering": [*JUDGE_CRITERIA, "rationale"]}


def parse_judgement(text: str, parsed: Any = None) -> dict[str, Any]:
    """A judge answer as {criterion: int 1-5, rationale}; raises ValueError when a score is missing or out of range."""
    obj = extract_json_object(text)
    out: dict[str, Any] = {}
    for c in JUDGE_CRITERIA:
        value = obj.get(c)
        if not isinstance(value, (int, float)) or not 1 <= value <= 5:
            raise ValueError(f"judge score {c!r} missing or outside 1-5: {value!r}")
        out[c] = round(value)
    out["rationale"] = str(obj.get("rationale", ""))
    return out


class Judge:
    """One judging session: client, request config and settings; `judge(row, item)` scores one poem."""

    def __init__(self, settings: JudgeSettings, api_key: str) -> None:
        self.settings = settings
        self.client = gemini.make_client(settings, api_key=api_key)
        self.config = gemini.generation_config(settings, judge_rubric(settings.rubric), judge_response_schema())

    def judge(self, row: Mapping[str, Any], item: EvalItem) -> dict[str, Any]:
        """Scores of one poem, or the row with `error` (a failed judgement is recorded, never raised)."""
        who = {"backend": row["backend"], "image": row["image"]}
        try:
            jpeg = encode_jpeg(prepare_image(item.image, self.settings.max_pixels))
            poem = f"体裁：{row['poem_type']}\n题目：{row['poem_title']}\n{row['poem_content']}"
            contents = gemini.user_contents(jpeg, poem)
            call = gemini.call_with_retries_sync(
                lambda: self.client.models.generate_content(model=self.settings.model, contents=contents, config=self.config),
                self.settings, what=f"judge {row['backend']}'s poem for {row['image']}",
            )
            outcome = gemini.interpret_response(call.unwrap(f"judge {row['image']}"), parse=parse_judgement)
        except Exception as exc:  # noqa: BLE001 - one failed judgement is recorded, not fatal
            return {**who, "error": f"{type(exc).__name__}: {exc}"}
        if outcome.error_kind:
            return {**who, "error": f"{outcome.error_kind}: {outcome.error_message}"}
        return {**who, **outcome.value, "error": None}


def run_judge(
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[EvalItem],
    out_dir: Path | None = None,
    *,
    enabled: bool | None = None,
    settings: JudgeSettings | Mapping[str, Any] | None = None,
) -> tuple[Any, str]:
    """Score every poem with Gemini against the rubric; (None, 'skipped: …') without a key or when disabled.

    settings: JudgeSettings or a mapping of its fields (default: configs/evaluate.yaml `judge`).
    """
    if enabled is False:
        return None, "skipped: disabled"
    key = gemini.resolve_api_key()
    if not key:
        return None, "skipped: no GEMINI_API_KEY"
    import pandas as pd

    if not isinstance(settings, JudgeSettings):
        settings = load_evaluate_settings({"judge": settings} if settings is not None else None).judge
    judge = Judge(settings, key)
    by_name = {item.name: item for item in items}
    todo = [r for r in rows if r.get("poem_content") and not r.get("unfit")]
    with ThreadPoolExecutor(max_workers=settings.max_workers) as pool:
        out = list(pool.map(lambda r: judge.judge(r, by_name[r["image"]]), todo))
    df = pd.DataFrame(out, columns=JUDGE_COLUMNS)
    failed = int(df["error"].notna().sum()) if len(df) else 0
    return df, f"ran: {settings.model}, {len(df) - failed} poems judged" + (f", {failed} failed" if failed else "")


def judge_summary(judge_df: Any) -> Any:
    """Mean judge score per backend and criterion."""
    if judge_df is None or judge_df.empty:
        return None
    ok = judge_df[judge_df["error"].isna()] if "error" in judge_df else judge_df
    if ok.empty:
        return None
    cols = [c for c in JUDGE_CRITERIA if c in ok]
    table = ok.groupby("backend")[cols].mean()
    table["n_judged"] = ok.groupby("backend").size()
    return table
