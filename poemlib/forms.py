"""The five poem forms (体裁) the project writes: the one list, shared by the schema and the 格律 engine.

Kept apart from `schema` so that the engine knows the form names without building the annotation models (a fresh
process checking poems imports it; ~30 ms of pydantic model building spared).
"""

from __future__ import annotations

from typing import Literal, get_args

PoemType = Literal["五言绝句", "七言绝句", "五言律诗", "七言律诗", "词"]
POEM_TYPES: tuple[str, ...] = get_args(PoemType)
