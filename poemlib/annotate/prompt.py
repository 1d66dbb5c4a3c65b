"""Versioned prompt files, and the annotate request built from them through `poemlib.gemini.requests`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poemlib import gemini
from poemlib.annotate.config import (
    AnnotateConfig,
    AnnotateConfigSource,
    load_annotate_config,
)
from poemlib.annotate.errors import AnnotateConfigError
from poemlib.config import RESOURCES_DIR
from poemlib.schema import gemini_response_schema

if TYPE_CHECKING:
    from google.genai import types as gtypes

PROMPTS_DIR = RESOURCES_DIR / "prompts"


@dataclass(frozen=True)
class Prompt:
    """System instruction (fixed prefix: system prompt + guide), user instruction and their version."""

    system: str
    user: str
    version: str


def _prompt_file(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else PROMPTS_DIR / path


def load_prompt(config: AnnotateConfigSource = None) -> Prompt:
    """Read the prompt files; version = '<version>+<sha256[:8] of system, guide and user instruction>'."""
    cfg = load_annotate_config(config)
    parts = []
    for name in (cfg.prompts.system, cfg.prompts.guide):
        path = _prompt_file(name)
        if not path.is_file():
            raise AnnotateConfigError(f"prompt file not found: {path}")
        parts.append(path.read_bytes())
    user = cfg.prompts.user_instruction.strip()
    digest = hashlib.sha256(parts[0] + b"\0" + parts[1] + b"\0" + user.encode("utf-8")).hexdigest()[:8]
    system = parts[0].decode("utf-8").strip() + "\n\n" + parts[1].decode("utf-8").strip() + "\n"
    return Prompt(system=system, user=user, version=f"{cfg.prompts.version}+{digest}")


def generation_config(config: AnnotateConfig, prompt: Prompt) -> gtypes.GenerateContentConfig:
    """Structured JSON output with the schema from poemlib.schema; the fixed system instruction comes first."""
    return gemini.generation_config(config.gemini, prompt.system, gemini_response_schema())


def rest_request(config: AnnotateConfig, prompt: Prompt, jpeg: bytes, instruction: str | None = None) -> dict[str, Any]:
    """The same request as REST JSON (GenerateContentRequest), for Batch API input files."""
    return gemini.rest_request(config.gemini, prompt.system, jpeg, instruction or prompt.user, gemini_response_schema())
