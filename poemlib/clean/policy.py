"""Which chosen records are eligible for training and which meter results are flagged (configs/clean.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, field_validator

from poemlib.config import ConfigError, config_path, load_settings

DedupePolicy = Literal["latest", "first", "best"]
DEDUPE_POLICIES: tuple[str, ...] = ("latest", "first", "best")
METER_CHECKS = ("form", "tone", "rhyme")
# --meter: strict drops every poem failing form, 平仄 or rhyme; flag keeps 平仄 / rhyme failures and flags them.
METER_PRESETS: tuple[str, ...] = ("strict", "flag")


class MeterRule(NamedTuple):
    """What a failed meter check does to a record: flag it (`<check>_failed`) and/or drop it."""

    check: str
    flag: bool
    drop: bool


class CleanPolicy(BaseModel):
    """Which chosen records are eligible for training, and which are flagged (configs/clean.yaml)."""

    model_config = ConfigDict(extra="forbid")

    drop_unfit: bool = False
    drop_failed: bool = True
    drop_missing_image: bool = True
    drop_form_fail: bool = True
    drop_tone_fail: bool = False
    drop_rhyme_fail: bool = False
    flag_form_fail: bool = True
    flag_tone_fail: bool = True
    flag_rhyme_fail: bool = True
    meter_mode: str = "pingshui"

    @field_validator("meter_mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        """A misspelt mode fails here, naming the config, not on the first poem."""
        from poemlib.meter.readings import MODES

        if value not in MODES:
            raise ValueError(f"unknown meter mode {value!r}; expected one of {', '.join(MODES)}")
        return value

    def with_meter(self, preset: str | None) -> CleanPolicy:
        """A copy with the meter preset applied (None: unchanged): 'strict' drops poems failing form, 平仄 or rhyme;
        'flag' keeps 平仄 and rhyme failures (flagged), form failures as the policy says."""
        if preset is None:
            return self
        if preset not in METER_PRESETS:
            raise ValueError(f"meter must be one of {', '.join(METER_PRESETS)}, got {preset!r}")
        strict = preset == "strict"
        update = {"drop_tone_fail": strict, "drop_rhyme_fail": strict, "flag_form_fail": True, "flag_tone_fail": True, "flag_rhyme_fail": True}
        if strict:
            update["drop_form_fail"] = True
        return self.model_copy(update=update)

    def meter_rules(self) -> tuple[MeterRule, ...]:
        """The flag/drop rule of each meter check, in METER_CHECKS order."""
        return tuple(MeterRule(c, getattr(self, f"flag_{c}_fail"), getattr(self, f"drop_{c}_fail")) for c in METER_CHECKS)


def load_policy(policy: Mapping[str, Any] | CleanPolicy | str | os.PathLike[str] | None = None) -> CleanPolicy:
    """The eligibility policy: a mapping, a CleanPolicy, a YAML path, or None for configs/clean.yaml (defaults
    when the project ships no such file)."""
    if policy is None:
        try:
            config_path("clean")
        except ConfigError:
            return CleanPolicy()
    return load_settings(CleanPolicy, policy, default="clean")
