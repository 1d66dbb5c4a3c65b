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


def cost_frame(records: Iterable[AnnotationRecord], prices: Prices | None = None) -> pd.DataFrame:
    """Tokens and USD by kind (uncached input, cached input, output, thinking), online and batch priced separately."""
    import pandas as pd

    prices = prices or Prices()
    rows: dict[str, dict[str, float]] = {}
    for record in records:
        factor = prices.batch_discount if is_batch_record(record) else 1.0
        for name, tokens, rate in _priced_items(record.usage, prices):
            row = rows.setdefault(name, {"tokens": 0, "usd": 0.0})
            row["tokens"] += tokens
            row["usd"] += tokens * rate * factor / 1e6
    frame = pd.DataFrame([{"item": k, "tokens": int(v["tokens"]), "usd": round(v["usd"], 6)} for k, v in rows.items()], columns=["item", "tokens", "usd"])
    total_tokens = int(frame["tokens"].sum()) if len(frame) else 0
    total_usd = round(float(frame["usd"].sum()) if len(frame) else 0.0, 6)
    return pd.concat([frame, pd.DataFrame([{"item": "total", "tokens": total_tokens, "usd": total_usd}])], ignore_index=True)
