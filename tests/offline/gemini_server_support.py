"""Shared data and helpers of the loopback Gemini server tests: one sample photo, our own poem for it, SDK calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from google import genai
from google.genai import types
from PIL import Image

from poemlib.config import SAMPLE_DIR
from poemlib.images import bytes_sha256, encode_jpeg
from poemlib.offline.gemini import GeminiServer
from poemlib.schema import Annotation

MODEL = "gemini-2.5-pro"
SYSTEM = "你是一位精通格律的古典诗人。请根据照片作诗，并以 JSON 回答。"
PHOTO = SAMPLE_DIR / "grace_hopper_portrait.jpg"
PHOTO_BYTES = PHOTO.read_bytes()
PHOTO_SHA = bytes_sha256(PHOTO_BYTES)
# Deliberately not the sample's recorded poem: the server must answer with what it is given.
POEM = Annotation(
    create_condition=True,
    poem_type="七言绝句",
    poem_title="咏女杰",
    poem_content="戎装素发映朝晖\n一代才名四海知\n算尽星河千万里\n丹心长伴铁机飞",
    poem_explanation="以戎装素发写人物风骨，借星河与铁机写其一生事业。",
)
REFERENCES = {PHOTO_SHA: POEM}
JSON_CONFIG = types.GenerateContentConfig(system_instruction=SYSTEM, response_mime_type="application/json")


def unknown_image() -> bytes:
    """A deterministic picture that is none of the reference photos."""
    return encode_jpeg(Image.effect_mandelbrot((320, 240), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB"))


def client_for(server: GeminiServer, key: str = "test-key", timeout_ms: int | None = None) -> genai.Client:
    """The real SDK client pointed at the loopback server."""
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url, timeout=timeout_ms))


def contents(image: bytes) -> list:
    """A photo and the request to write a poem about it."""
    return [types.Part.from_bytes(data=image, mime_type="image/jpeg"), "请为这张照片作一首诗。"]


def ask(client: genai.Client, image: bytes = PHOTO_BYTES, config: types.GenerateContentConfig = JSON_CONFIG) -> types.GenerateContentResponse:
    """One generateContent call for a photo."""
    return client.models.generate_content(model=MODEL, contents=contents(image), config=config)


def server_factory() -> Iterator[Callable[..., GeminiServer]]:
    """Body of each module's `make_server` fixture: start servers over the test references, stop them all after."""
    started: list[GeminiServer] = []

    def _make(**kwargs) -> GeminiServer:
        kwargs.setdefault("references", REFERENCES)
        kwargs.setdefault("reference_images", [PHOTO])
        server = GeminiServer(**kwargs).start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()
