"""The API key: explicit, the environment, or an untracked .env; never printed or logged."""

from __future__ import annotations

import os
import re
from pathlib import Path

from poemlib.config import PROJECT_ROOT

KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
OFFLINE_API_KEY = "offline-replay"  # any key works against the loopback server


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, blank lines and `export ` prefixes allowed)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].strip()
        out[name.strip()] = value
    return out


def resolve_api_key(api_key: str | None = None, *, env_file: str | os.PathLike[str] | None = None) -> str | None:
    """The key: explicit, else $GEMINI_API_KEY / $GOOGLE_API_KEY, else the same names in an untracked .env at the project root."""
    if api_key and api_key.strip():
        return api_key.strip()
    for name in KEY_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    values = read_env_file(Path(env_file) if env_file is not None else PROJECT_ROOT / ".env")
    for name in KEY_ENV_VARS:
        value = values.get(name, "").strip()
        if value:
            return value
    return None


def key_for_endpoint(api_key: str | None, base_url: str | None) -> str | None:
    """The key a run uses: a resolved one, else the offline key when an explicit endpoint is given, else None."""
    key = resolve_api_key(api_key)
    if key:
        return key
    return OFFLINE_API_KEY if base_url else None


def is_loopback(base_url: str | None) -> bool:
    """True for http(s)://127.x / localhost / [::1] endpoints (the offline replay server)."""
    return bool(base_url) and bool(re.match(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", base_url or ""))


def no_key_message() -> str:
    """How to provide a key, or run offline."""
    return (
        "No Gemini API key found. Set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment, or put "
        f"GEMINI_API_KEY=... in an untracked .env file at {PROJECT_ROOT}.\n"
        "To run offline against the loopback replay server (recorded answers, no Gemini):\n"
        "  poemlib annotate IMAGES_DIR --out STORE.jsonl --offline\n"
        "or start one with `poemlib offline serve-gemini --port 8765` and pass --base-url http://127.0.0.1:8765."
    )
