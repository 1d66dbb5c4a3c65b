"""Run the stage's coroutines from sync code, also inside Jupyter's running event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


def run_sync(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code, also when an event loop is already running (Jupyter).

    With a running loop the coroutine runs on a fresh loop in a helper thread; interrupting the caller (Ctrl-C,
    Jupyter's stop button) cancels it there, so no run keeps writing to the store in the background.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> Any:
        holder["task"], holder["loop"] = asyncio.current_task(), asyncio.get_running_loop()
        started.set()
        return await factory()

    def target() -> None:
        try:
            holder["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            holder["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, name="poemlib-annotate", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except BaseException:
        started.wait()
        loop, task = holder.get("loop"), holder.get("task")
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        thread.join()
        raise
    if "error" in holder:
        raise holder["error"]
    return holder.get("value")
