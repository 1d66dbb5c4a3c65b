"""The loopback Gemini server's lifecycle, concurrency, routing and CLI entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from google.genai import errors, types

from poemlib.config import PROJECT_ROOT
from poemlib.offline.gemini import GeminiServer
from poemlib.offline.gemini.routes import ROUTES, find_route
from poemlib.schema import Annotation
from tests.offline.gemini_server_support import (
    JSON_CONFIG,
    MODEL,
    PHOTO,
    PHOTO_BYTES,
    POEM,
    REFERENCES,
    ask,
    client_for,
    contents,
    server_factory,
)


@pytest.fixture()
def make_server():
    """Start servers over the test references; all are stopped at teardown."""
    yield from server_factory()


def test_concurrent_async_requests_overlap(make_server):
    server = make_server(latency_s=0.4)
    client = client_for(server)

    async def run() -> list[types.GenerateContentResponse]:
        try:
            calls = [client.aio.models.generate_content(model=MODEL, contents=contents(PHOTO_BYTES), config=JSON_CONFIG) for _ in range(8)]
            return await asyncio.gather(*calls)
        finally:
            await client.aio.aclose()

    started = time.monotonic()
    responses = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert all(Annotation.model_validate_json(r.text) == POEM for r in responses)
    assert server.stats.requests == 8 and server.stats.peak_concurrency > 1 and server.stats.in_flight == 0
    assert elapsed < 8 * 0.4
    assert len(server.stats.request_times) == 8


def test_async_429_exposes_retry_after(make_server):
    server = make_server(script=["429"], retry_after_s=0.5)
    client = client_for(server)

    async def run() -> errors.ClientError:
        try:
            await client.aio.models.generate_content(model=MODEL, contents=contents(PHOTO_BYTES), config=JSON_CONFIG)
        except errors.ClientError as exc:
            return exc
        finally:
            await client.aio.aclose()
        raise AssertionError("no 429")

    exc = asyncio.run(run())
    assert exc.code == 429 and exc.response.headers["Retry-After"] == "0.5"  # aiohttp response headers


def test_route_table_names_each_endpoint_once():
    assert find_route("POST", f"/v1beta/models/{MODEL}:generateContent")[1] == {"model": MODEL, "verb": "generateContent"}
    assert find_route("GET", "/v1beta/files/abc:download")[0].endpoint == "files.download"
    assert find_route("GET", "/download/v1beta/files/abc:download")[1] == {"id": "abc"}
    assert find_route("POST", "/v1beta/batches/xyz:cancel")[0].endpoint == "batches.cancel"
    assert find_route("PUT", "/v1beta/batches/xyz") is None and find_route("GET", "/v2/models/x") is None
    endpoints = [r.endpoint for r in ROUTES if r.endpoint]
    assert len(endpoints) == len(set(endpoints))


def test_unknown_path_is_a_counted_404(make_server):
    server = make_server()
    reply = httpx.put(f"{server.base_url}/v1beta/batches/xyz", timeout=10)
    assert reply.status_code == 404 and reply.json()["error"]["message"] == "Method not found: PUT /v1beta/batches/xyz"
    assert server.stats.by_endpoint == {"unknown": 1}


def test_start_and_stop_are_fast_and_release_the_port():
    started = time.monotonic()
    server = GeminiServer(references=REFERENCES, reference_images=[PHOTO]).start()
    assert time.monotonic() - started < 1.0 and server.base_url.startswith("http://127.0.0.1:")
    port = server.port
    assert Annotation.model_validate_json(ask(client_for(server)).text) == POEM
    server.stop()
    assert not server.running
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_serve_forever_prints_the_url_and_stops_on_ctrl_c():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"from poemlib.offline.gemini import serve_forever; serve_forever(port={port}, mode='replay', fault_rate=0.0, faults=['500'], latency_s=0.0, seed=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        body = {"contents": [{"parts": [{"text": "作诗"}]}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1beta/models/{MODEL}:generateContent", json=body, headers={"x-goog-api-key": "k"}, timeout=10)
        assert reply.status_code == 200 and reply.json()["candidates"][0]["finishReason"] == "STOP"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped after 1 generateContent" in out and "'unfit': 1" in out
    finally:
        if proc.poll() is None:
            proc.kill()
