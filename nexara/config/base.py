"""Building blocks of the config schema: the base models, the rule error that names a key, the tier
defaults, and how a pydantic error becomes a key and a message."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: Confidence tiers of a clip verdict: P(decided class) >= value; LOW below every tier.
CONFIDENCE_TIERS: Mapping[str, float] = MappingProxyType({"HIGH": 0.85, "MEDIUM": 0.65})
#: Alert tiers by peak probability: the highest threshold at or below the peak wins.
ALERT_TIERS: Mapping[str, float] = MappingProxyType({**CONFIDENCE_TIERS, "LOW": 0.0})


class RuleError(ValueError):
    """A cross-field rule broken at ``key`` (a dotted path relative to the model that raised it), so the
    error names that key and its line rather than the whole section."""

    def __init__(self, key: str | tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key: tuple[str | int, ...] = tuple(key.split(".")) if isinstance(key, str) else key


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Frozen(BaseModel):
    """Sections handed to the live path as they are: shared by threads and actors, so never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_tiers(tiers: Mapping[str, float]) -> None:
    if not tiers:
        raise RuleError("tiers", "tiers must name at least one tier")
    for name, value in tiers.items():
        if not name:
            raise RuleError("tiers", "tier names must be non-empty")
        if not 0.0 <= value <= 1.0:
            raise RuleError(("tiers", name), f"tiers: {name} must be a probability in [0, 1], got {value!r}")


def error_loc(err: Any) -> tuple[str | int, ...]:
    """The key an error is about: its location, plus the key a :class:`RuleError` names."""
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    return (*loc, *cause.key) if isinstance(cause, RuleError) else loc


def error_msg(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    cause = (err.get("ctx") or {}).get("error")
    return str(cause) if isinstance(cause, RuleError) else str(err["msg"])


def error_key(err: Any) -> tuple[str, str]:
    """(dotted key, message) of one pydantic error of this schema."""
    return ".".join(str(p) for p in error_loc(err)), error_msg(err)
