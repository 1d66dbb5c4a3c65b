"""Request building: generation config with a response schema, user turns with an inline image, REST JSON for batches."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from poemlib.gemini.settings import GeminiSettings

if TYPE_CHECKING:
    from google.genai import types as gtypes


def generation_config(
    settings: GeminiSettings, system_instruction: str, response_schema: dict[str, Any] | None = None, *, temperature: float | None = None
) -> gtypes.GenerateContentConfig:
    """JSON output (constrained by `response_schema` when given) after a fixed system instruction."""
    from google.genai import types

    thinking = types.ThinkingConfig(thinking_budget=settings.thinking_budget) if settings.thinking_budget is not None else None
    return types.GenerateContentConfig(
        system_instruction=system_instruction,
        temperature=settings.temperature if temperature is None else temperature,
        max_output_tokens=settings.max_output_tokens,
        response_mime_type="application/json",
        response_schema=response_schema,
        thinking_config=thinking,
    )


def user_contents(jpeg: bytes, instruction: str) -> list[gtypes.Content]:
    """A conversation's first user turn: the image inline, then the instruction."""
    from google.genai import types

    return [types.Content(role="user", parts=[types.Part.from_bytes(data=jpeg, mime_type="image/jpeg"), types.Part.from_text(text=instruction)])]


def rest_request(settings: GeminiSettings, system_instruction: str, jpeg: bytes, instruction: str, response_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same request as REST JSON (GenerateContentRequest), for Batch API input files."""
    gen: dict[str, Any] = {"temperature": settings.temperature, "maxOutputTokens": settings.max_output_tokens, "responseMimeType": "application/json"}
    if response_schema is not None:
        gen["responseSchema"] = response_schema
    if settings.thinking_budget is not None:
        gen["thinkingConfig"] = {"thinkingBudget": settings.thinking_budget}
    image = {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(jpeg).decode("ascii")}}
    return {
        "contents": [{"role": "user", "parts": [image, {"text": instruction}]}],
        "systemInstruction": {"parts": [{"text": system_instruction}]},
        "generationConfig": gen,
    }
