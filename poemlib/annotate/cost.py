"""What tokens cost: per request (`usage_cost`) and as a table by kind (`cost_frame`), batch at its discount."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from poemlib.annotate.config import Prices
from poemlib.schema import AnnotationRecord, TokenUsage

if TYPE_CHECKING:
    import pandas as pd


def usage_cost(usage: TokenUsage, prices: Prices, *, batch: bool = False) -> float:
    """USD for one request's usage: uncached input + cached input + output (thinking billed as output)."""
    long = usage.prompt_tokens > prices.long_context_tokens
    p_in = prices.input_long if long else prices.input
    p_cached = prices.cached_input_long if long else prices.cached_input
    p_out = prices.output_long if long else prices.output
    uncached = max(0, usage.prompt_tokens - usage.cached_tokens)
    cost = (uncached * p_in + usage.cached_tokens * p_cached + (usage.output_tokens + usage.thinking_tokens) * p_out) / 1e6
    return cost * (prices.batch_discount if batch else 1.0)


def is_batch_record(record: AnnotationRecord) -> bool:
    """True for a record collected from a Batch API job (billed at the batch discount)."""
    return bool(record.source and record.source.startswith("batch:"))


def _priced_items(usage: TokenUsage, prices: Prices) -> tuple[tuple[str, int, float], ...]:
    """(item, tokens, USD per 1M) for one request."""
    long = usage.prompt_tokens > prices.long_context_tokens
    return (
        ("input (uncached)", max(0, usage.prompt_tokens - usage.cached_tokens), prices.input_long if long else prices.input),
        ("input (cached)", usage.cached_tokens, prices.cached_input_long if long else prices.cached_input),
        ("output", usage.output_tokens, prices.output_long if long else prices.output),
        ("thinking", usage.thinking_tokens, prices.output_long if long else prices.output),
    )


def request_usages(record: AnnotationRecord) -> list[tuple[str, TokenUsage]]:
    """(part, usage) per priced request group of a record: 'first' (the first answer, retries included) and one
    'revision' per revision round."""
    if record.first_answer is None and not record.revisions:
        return [("first", record.usage)]
    first = record.first_answer.usage if record.first_answer is not None else record.usage - sum((r.usage for r in record.revisions), TokenUsage())
    return [("first", first), *(("revision", r.usage) for r in record.revisions)]


def cost_frame(records: Iterable[AnnotationRecord], prices: Prices | None = None) -> pd.DataFrame:
    """Tokens and USD by kind (uncached input, cached input, output, thinking), online and batch priced separately;
    `tokens` / `usd` are split into first answers (`first_*`) and revision rounds (`revision_*`)."""
    import pandas as pd

    prices = prices or Prices()
    parts = ("first", "revision")
    rows: dict[str, dict[str, float]] = {}
    for record in records:
        factor = prices.batch_discount if is_batch_record(record) else 1.0
        for part, usage in request_usages(record):
            for name, tokens, rate in _priced_items(usage, prices):
                row = rows.setdefault(name, {f"{p}_{k}": 0 for p in parts for k in ("tokens", "usd")})
                row[f"{part}_tokens"] += tokens
                row[f"{part}_usd"] += tokens * rate * factor / 1e6
    table = []
    for name, row in rows.items():
        out: dict[str, object] = {"item": name, "tokens": int(row["first_tokens"] + row["revision_tokens"]), "usd": round(row["first_usd"] + row["revision_usd"], 6)}
        for part in parts:
            out[f"{part}_tokens"], out[f"{part}_usd"] = int(row[f"{part}_tokens"]), round(row[f"{part}_usd"], 6)
        table.append(out)
    columns = ["item", "tokens", "usd", *(f"{p}_{k}" for p in parts for k in ("tokens", "usd"))]
    frame = pd.DataFrame(table, columns=columns)
    total: dict[str, object] = {"item": "total"}
    for column in columns[1:]:
        total[column] = (int(frame[column].sum()) if column.endswith("tokens") else round(float(frame[column].sum()), 6)) if len(frame) else 0
    return pd.concat([frame, pd.DataFrame([total], columns=columns)], ignore_index=True)
