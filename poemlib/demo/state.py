"""The studio's state as plain values: the customisation fields, each column's state, the events a view receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from poemlib.demo.config import RequestDefaults
from poemlib.schema import GenerationResult, PoemRequest

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.meter import MeterReport

ColumnPhase = Literal["idle", "busy", "done", "failed"]


@dataclass(frozen=True)
class Customisation:
    """The customisation fields as the user set them ("" means "any")."""

    poem_type: str = ""
    cipai: str = ""
    mood: str = ""
    extra_instruction: str = ""
    temperature: float = 0.7
    max_new_tokens: int = 512
    seed: int = 0
    constrain: bool = False  # 格律约束: the Qwen columns decode under the constraint (Gemini ignores it)

    @classmethod
    def from_defaults(cls, defaults: RequestDefaults) -> Customisation:
        """Where the fields start (configs/demo.yaml `defaults`)."""
        return cls(temperature=defaults.temperature, max_new_tokens=defaults.max_new_tokens, seed=int(defaults.seed or 0),
                   constrain=bool(defaults.constrain))

    def request(self) -> PoemRequest:
        """The PoemRequest these fields describe (a 词牌 only with 词); ValueError when they contradict."""
        poem_type = self.poem_type or None
        cipai = self.cipai if poem_type == "词" else None
        return PoemRequest(
            poem_type=poem_type,
            cipai=cipai or None,
            mood=(self.mood or "").strip() or None,
            extra_instruction=(self.extra_instruction or "").strip() or None,
            temperature=float(self.temperature),
            max_new_tokens=int(self.max_new_tokens),
            seed=int(self.seed),
            constrain=bool(self.constrain),
        )


@dataclass(frozen=True)
class Column:
    """One backend's column: idle, busy while it generates, then done (a poem) or failed, with its answer."""

    phase: ColumnPhase = "idle"
    result: GenerationResult | None = None
    report: MeterReport | None = None


class ControllerEvents:
    """What the controller tells its view; every method is a no-op here (tests and headless use need no view)."""

    def message(self, level: str, text: str) -> None:
        """The status message changed (level: info | warn | error)."""

    def backends_loaded(self) -> None:
        """The backends finished loading (or failed to: see `StudioController.load_error`)."""

    def photo_changed(self) -> None:
        """A new photo was chosen."""

    def column_changed(self, name: str) -> None:
        """A column went busy or received its answer (called from worker threads)."""

    def running_changed(self, running: bool) -> None:
        """A generation run started or finished."""
