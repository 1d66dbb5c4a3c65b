"""Sync entry points: `annotate_folder` (online, or batch submit/collect) and the batch functions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from poemlib.annotate.batch_collect import cancel_batch_async, collect_batch_async
from poemlib.annotate.batch_submit import submit_batch_async
from poemlib.annotate.config import AnnotateConfig
from poemlib.annotate.online import annotate_folder_async
from poemlib.annotate.store import batch_state_path
from poemlib.annotate.summary import RunSummary
from poemlib.annotate.sync import run_sync


def submit_batch(images_dir: str | os.PathLike[str], store_path: str | os.PathLike[str], **kwargs: Any) -> RunSummary:
    """Sync `submit_batch_async`."""
    return run_sync(lambda: submit_batch_async(images_dir, store_path, **kwargs))


def collect_batch(store_path: str | os.PathLike[str], **kwargs: Any) -> RunSummary:
    """Sync `collect_batch_async`."""
    return run_sync(lambda: collect_batch_async(store_path, **kwargs))


def cancel_batch(store_path: str | os.PathLike[str], **kwargs: Any) -> RunSummary:
    """Sync `cancel_batch_async`."""
    return run_sync(lambda: cancel_batch_async(store_path, **kwargs))


def annotate_folder(
    images_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None = None,
    concurrency: int | None = None,
    rpm: int | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    batch: bool = False,
    wait: bool = False,
    revise: int | None = None,
) -> RunSummary:
    """Sync entry point. Online by default; batch=True submits a Batch API job, or collects the pending one.
    `revise` overrides the config's revise_rounds (0: no revision turns)."""
    if batch:
        common: dict[str, Any] = {"config": config, "base_url": base_url, "api_key": api_key, "progress": progress}
        if batch_state_path(store_path).exists():
            return collect_batch(store_path, wait=wait, revise=revise, **common)
        summary = submit_batch(images_dir, store_path, limit=limit, revise=revise, **common)
        if wait and summary.batch_jobs:
            return collect_batch(store_path, wait=True, revise=revise, **common)
        return summary
    return run_sync(
        lambda: annotate_folder_async(
            images_dir, store_path, config=config, concurrency=concurrency, rpm=rpm, base_url=base_url, api_key=api_key, limit=limit, progress=progress,
            revise=revise,
        )
    )
