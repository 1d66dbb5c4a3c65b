"""`RunSummary`: what one run did, as a table and as terminal text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from poemlib.gemini import DEFAULT_ENDPOINT
from poemlib.schema import TokenUsage

if TYPE_CHECKING:
    import pandas as pd


class RunSummary(BaseModel):
    """What one run did."""

    mode: Literal["online", "batch-submit", "batch-collect", "batch-pending", "batch-cancel"] = "online"
    store: str
    images_dir: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    model: str
    prompt_version: str
    files_found: int = 0
    images_total: int = 0
    duplicate_files: int = 0
    ignored_files: int = 0
    unreadable: list[str] = Field(default_factory=list)
    skipped_done: int = 0
    retried_from_store: int = 0
    paths_added: int = 0
    attempted: int = 0
    remaining: int = 0
    ok: int = 0
    unfit: int = 0
    failed: int = 0
    failed_by_kind: dict[str, int] = Field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    wall_s: float = 0.0
    images_per_min: float = 0.0
    aborted: str | None = None
    revise_rounds: int = 0
    revision_requests: int = 0
    revised: int = 0
    revised_passing: int = 0
    revisions_resumed: int = 0
    recovered_requests: int = 0
    batch_jobs: list[str] = Field(default_factory=list)
    batch_state: str | None = None

    def _rows(self) -> list[tuple[str, Any]]:
        """(metric, value) in display order."""
        rows: list[tuple[str, Any]] = [
            ("mode", self.mode),
            ("endpoint", ("OFFLINE REPLAY " if self.offline else "") + self.endpoint),
            ("model", self.model),
            ("prompt_version", self.prompt_version),
            ("store", self.store),
            ("files found", self.files_found),
            ("distinct images", self.images_total),
            ("duplicate files (same bytes)", self.duplicate_files),
            ("skipped (already final)", self.skipped_done),
            ("retried from store (transient)", self.retried_from_store),
            ("attempted this run", self.attempted),
            ("remaining", self.remaining),
            ("ok", self.ok),
            ("unfit", self.unfit),
            ("failed", self.failed),
            *((f"failed: {k}", v) for k, v in sorted(self.failed_by_kind.items())),
            ("HTTP requests", self.requests),
            ("retries", self.retries),
            ("prompt tokens", self.usage.prompt_tokens),
            ("cached tokens", self.usage.cached_tokens),
            ("output tokens", self.usage.output_tokens),
            ("thinking tokens", self.usage.thinking_tokens),
            ("cost estimate (USD)", round(self.cost_usd, 4)),
            ("wall time (s)", round(self.wall_s, 2)),
            ("images / min", round(self.images_per_min, 1)),
        ]
        if self.revise_rounds:
            rows += [
                ("revise rounds (max)", self.revise_rounds),
                ("images revised", self.revised),
                ("revised now 合律", self.revised_passing),
                ("revision requests", self.revision_requests),
                ("revisions resumed from store", self.revisions_resumed),
            ]
        if self.recovered_requests:
            rows.append(("asked again (not JSON / MAX_TOKENS)", self.recovered_requests))
        if self.unreadable:
            rows.append(("unreadable files", len(self.unreadable)))
        if self.batch_jobs:
            rows.append(("batch jobs", ", ".join(self.batch_jobs)))
        if self.batch_state:
            rows.append(("batch state", self.batch_state))
        if self.aborted:
            rows.append(("ABORTED", self.aborted))
        return rows

    def to_frame(self) -> pd.DataFrame:
        """The summary as a two-column table (metric, value)."""
        import pandas as pd

        return pd.DataFrame(self._rows(), columns=["metric", "value"]).astype({"value": str})

    def text(self) -> str:
        """A short multi-line report for the terminal."""
        return "\n".join(f"{m:<32} {v}" for m, v in self.to_frame().itertuples(index=False))
