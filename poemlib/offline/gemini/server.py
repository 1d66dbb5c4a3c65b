"""The loopback server: GeminiServer composes replay, faults, files and batches behind uvicorn in a thread."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Self

from poemlib.offline.gemini.batches import BatchQueue
from poemlib.offline.gemini.faults import ALL_FAULTS, FaultPlan
from poemlib.offline.gemini.files import FileStore, IdMaker
from poemlib.offline.gemini.generate import Responder
from poemlib.offline.gemini.matching import DEFAULT_MATCH_THRESHOLD, ImageIndex
from poemlib.offline.gemini.replay import Replay
from poemlib.offline.gemini.routes import check_key, find_route
from poemlib.offline.gemini.stats import ServerStats, StatsBook
from poemlib.offline.gemini.tokens import UsageMeter
from poemlib.offline.gemini.wire import (
    MAX_REQUEST_BYTES,
    Answer,
    ApiError,
    error_answer,
    to_response,
)
from poemlib.schema import Annotation

log = logging.getLogger(__name__)

_UVICORN_SERVER: type | None = None


def _uvicorn_server_class() -> type:
    """uvicorn.Server whose main loop wakes at once on `request_exit()` instead of on its next 0.1 s tick."""
    import uvicorn

    class _Server(uvicorn.Server):
        _loop: asyncio.AbstractEventLoop | None = None
        _wake: asyncio.Event | None = None

        async def main_loop(self) -> None:
            self._wake, self._loop = asyncio.Event(), asyncio.get_running_loop()
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 1) % 864000
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.1)
                except TimeoutError:
                    pass

        def request_exit(self) -> None:
            self.should_exit = True
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                try:
                    loop.call_soon_threadsafe(wake.set)
                except RuntimeError:  # loop already closed
                    pass

    return _Server


def _uvicorn_server(app: Any) -> Any:
    """A quiet uvicorn server for the ASGI app (h11, no lifespan, no access log)."""
    global _UVICORN_SERVER
    import uvicorn

    if _UVICORN_SERVER is None:
        _UVICORN_SERVER = _uvicorn_server_class()
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        interface="asgi3",
        proxy_headers=False,
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        server_header=False,
    )
    return _UVICORN_SERVER(config)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket with TCP_NODELAY (port 0: a free port)."""
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
    # without it every keep-alive exchange stalls ~40 ms on delayed ACKs. Accepted sockets inherit NODELAY too.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock


class GeminiServer:
    """Loopback Gemini REST server (replay + faults + batches + files) running uvicorn in a background thread."""

    def __init__(
        self,
        mode: str = "replay",
        *,
        references: Mapping[str, Annotation | Mapping[str, Any]] | None = None,
        fault_rate: float = 0.0,
        faults: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        latency_s: float = 0.0,
        slow_s: float = 3.0,
        retry_after_s: float = 1.0,
        script: Sequence[str] | None = None,
        fault_by_digest: Mapping[str, str] | None = None,
        valid_keys: Collection[str] | None = None,
        batch_polls_until_done: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
        reference_images: Iterable[str | os.PathLike[str] | bytes] | None = None,
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
        implicit_cache_min_tokens: int = 0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        drafts: Mapping[str, Annotation | Mapping[str, Any]] | None = None,
        first_answer: str = "draft",
    ) -> None:
        """
        references: image sha256 → recorded annotation (default: `poemlib.samples.reference_annotations()`).
        reference_images: photo files (or bytes) to match received images against (default: the sample photos).
            An image matched to one of them is known by that file's sha256 (its *identity*: the key of
            `stats.by_digest` and of `fault_by_digest`); without a reference annotation it is answered as unfit.
        script: per-model-call outcomes ("ok" or a fault kind), consumed first; then `fault_by_digest`
            (identity or received-bytes sha256 → "kind" or "kind*N": the first N calls for that image); then a
            `random.Random(seed)` draw with probability `fault_rate` among `faults`.
        latency_s: added to every answer (asyncio sleep: concurrent requests really overlap); slow_s: the slow fault.
        retry_after_s: the 429 fault's Retry-After header (and RetryInfo.retryDelay in the error details).
        valid_keys: when set, any other API key gets Gemini's 400 INVALID_ARGUMENT "API key not valid" (no key: 403).
        batch_polls_until_done: GETs of a batch before it reports SUCCEEDED (the first GET shows RUNNING).
        drafts: image sha256 → our flawed draft of its reference (default: `poemlib.samples.draft_annotations()` when
            `references` is default too, else none).
        first_answer: "draft" (default): a photo with a draft is answered the draft first, and the reference once a
            revision request names every violation `poemlib.meter` finds in the draft (see `revision`); "reference":
            always the reference (the behaviour before drafts).
        implicit_cache_min_tokens: system instructions shorter than this are never reported cached (Gemini: 1024 for
            Flash, 2048 for Pro; 0 here so short test prompts exercise the cache accounting).
        """
        if mode not in ("replay", "faults"):
            raise ValueError(f"mode must be 'replay' or 'faults', got {mode!r}")
        self.mode = mode
        self.plan = FaultPlan(fault_rate=fault_rate, faults=faults, seed=seed, script=script, fault_by_digest=fault_by_digest)
        if mode == "faults" and not self.plan.active:
            raise ValueError("mode 'faults' needs fault_rate > 0, a script or fault_by_digest")
        self.replay = Replay(references, reference_images, match_threshold, drafts=drafts, first_answer=first_answer)
        self.latency_s = float(latency_s)
        self.valid_keys = None if valid_keys is None else frozenset(valid_keys)
        self.max_request_bytes = int(max_request_bytes)
        self.host = host
        self.port = int(port)
        self.stats_book = StatsBook()
        new_id = IdMaker(seed)
        self.files = FileStore(lambda: self.base_url, new_id)
        self.responder = Responder(
            self.replay, self.plan, UsageMeter(implicit_cache_min_tokens), self.stats_book, self.files.lookup, retry_after_s=retry_after_s, slow_s=slow_s
        )
        self.batches = BatchQueue(self.files, self._answer_in_batch, new_id, batch_polls_until_done)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._socket: socket.socket | None = None

    @property
    def references(self) -> dict[str, Annotation]:
        """Recorded annotations by image sha256."""
        return self.replay.references

    @property
    def images(self) -> ImageIndex:
        """The photos received images are matched to."""
        return self.replay.images

    @property
    def stats(self) -> ServerStats:
        """What the server saw since it started or since `reset_stats()`."""
        return self.stats_book.current

    def reset_stats(self) -> None:
        """Zero the counters (requests still in flight keep being tracked)."""
        self.stats_book.reset()

    def _answer_in_batch(self, model: str, request: Mapping[str, Any]) -> Answer:
        """A batch item's answer (request errors included), counted as a batch request."""
        try:
            answer = self.responder.generate(model, request, in_batch=True)
        except ApiError as exc:
            answer = exc.answer
        self.stats_book.outcome(answer.outcome, in_batch=True)
        return answer

    # -- lifecycle ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        """http://HOST:PORT (the SDK's `HttpOptions.base_url`); the port is known once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> GeminiServer:
        """Bind (port 0: a free port), serve in a daemon thread, return once accepting connections."""
        if self.running:
            return self
        sock = _listening_socket(self.host, self.port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        server = _uvicorn_server(self._asgi)
        self._uvicorn = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"gemini-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gemini loopback server failed to start on {self.base_url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving: interrupt pending waits, close connections, join the thread."""
        self._stopping.set()
        if self._uvicorn is not None:
            self._uvicorn.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("gemini server thread did not stop within 10 s")
        self._thread = None
        self._uvicorn = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests ----------------------------------------------------------

    async def pause(self, seconds: float) -> None:
        """Sleep without blocking other requests; cut short when the server stops."""
        end = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _dispatch(self, request: Any) -> Any:
        """Route the request: count its endpoint, check the key, run its handler; 404 for any other path."""
        method, path = request.method.upper(), request.url.path
        found = find_route(method, path)
        if found is None:
            self.stats_book.endpoint("unknown")
            return to_response(error_answer(404, "NOT_FOUND", f"Method not found: {method} {path}", "not_found"))
        route, params = found
        if route.endpoint is not None:
            self.stats_book.endpoint(route.endpoint)
            check_key(request, self.valid_keys)
        return await route.handler(self, request, params)

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.requests import Request

        if scope["type"] != "http":
            return
        try:
            response = await self._dispatch(Request(scope, receive))
        except ApiError as exc:
            response = to_response(exc.answer)
        except Exception as exc:
            log.exception("gemini server: internal error")
            response = to_response(error_answer(500, "INTERNAL", f"loopback server bug: {exc}", "server_bug"))
        await response(scope, receive, send)


def serve_forever(
    port: int = 8765,
    mode: str = "replay",
    fault_rate: float = 0.0,
    faults: Sequence[str] = ALL_FAULTS,
    latency_s: float = 0.0,
    seed: int = 0,
    first_answer: str = "draft",
) -> None:
    """Serve on 127.0.0.1:PORT until Ctrl-C (`poemlib offline serve-gemini`); prints the base URL first."""
    server = GeminiServer(
        mode=mode, fault_rate=fault_rate, faults=[f for f in faults if f.strip()], latency_s=latency_s, seed=seed, port=port, first_answer=first_answer
    )
    server.start()
    print(f"Gemini loopback server ({mode}, {len(server.references)} reference annotations, first answer: {first_answer}) at {server.base_url}", flush=True)
    print(f"  export GOOGLE_GEMINI_BASE_URL={server.base_url}   # or HttpOptions(base_url=...); Ctrl-C stops", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        stats = server.stats
        print(f"stopped after {stats.requests} generateContent requests (peak concurrency {stats.peak_concurrency}); outcomes: {dict(stats.by_outcome)}", flush=True)
