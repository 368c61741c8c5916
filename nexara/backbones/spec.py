"""The preprocessing contract between a frame source and a backbone.

A :class:`PreprocessSpec` says what a backbone expects to see: the input size, how a frame of another
shape is brought to that size, and the per-channel normalisation. Its :meth:`PreprocessSpec.hash` goes
into model manifests so that features extracted offline and a model served online provably agree on
preprocessing; a mismatch fails at start-up instead of silently degrading accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from nexara.config.offline import ResizePolicy
from nexara.errors import InvalidSpecError

__all__ = ["InvalidSpecError", "PreprocessSpec", "ResizePolicy"]

Channels = Literal["rgb"]

_RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)
_CHANNELS: tuple[str, ...] = get_args(Channels)
_FIELDS = ("size_hw", "mean", "std", "resize", "channels")


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"preprocess spec: {name} must be 3 numbers, got {value!r}") from exc
    if len(items) != 3 or not all(math.isfinite(v) for v in items):
        raise InvalidSpecError(f"preprocess spec: {name} must be 3 finite numbers, got {value!r}")
    return items[0], items[1], items[2]


@dataclass(frozen=True, slots=True)
class PreprocessSpec:
    """How uint8 RGB frames become a backbone's input tensor.

    ``mean`` and ``std`` are in 0..255 pixel units: ``x_norm = (x - mean) / std`` on the raw uint8
    value. ``resize`` says how a frame whose aspect ratio differs from ``size_hw`` is fitted:

    - ``squash``: stretch to ``size_hw`` (aspect ratio not kept, nothing cut off);
    - ``letterbox``: scale to fit inside, pad the rest (aspect ratio kept, nothing cut off);
    - ``center_crop``: scale the shorter side to fit, cut the centre (aspect ratio kept, edges lost).

    Values are normalised on construction (ints become floats, lists become tuples) so that equal
    specs hash equally however they were written.
    """

    size_hw: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: ResizePolicy
    channels: Channels = "rgb"

    def __post_init__(self) -> None:
        try:
            h, w = (int(v) for v in self.size_hw)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(f"preprocess spec: size_hw must be (height, width), got {self.size_hw!r}") from exc
        if h <= 0 or w <= 0:
            raise InvalidSpecError(f"preprocess spec: size_hw must be positive, got {self.size_hw!r}")
        mean = _triple("mean", self.mean)
        std = _triple("std", self.std)
        if any(s <= 0 for s in std):
            raise InvalidSpecError(f"preprocess spec: std must be > 0, got {self.std!r}")
        if self.resize not in _RESIZE_POLICIES:
            raise InvalidSpecError(
                f"preprocess spec: resize must be one of {list(_RESIZE_POLICIES)}, got {self.resize!r}"
            )
        if self.channels not in _CHANNELS:
            raise InvalidSpecError(f"preprocess spec: channels must be one of {list(_CHANNELS)}, got {self.channels!r}")
        # frozen dataclass: normalising in place needs object.__setattr__
        object.__setattr__(self, "size_hw", (h, w))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def height_px(self) -> int:
        return self.size_hw[0]

    @property
    def width_px(self) -> int:
        return self.size_hw[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {
            "size_hw": list(self.size_hw),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise InvalidSpecError(f"preprocess spec: expected a mapping, got {type(data).__name__}")
        extra = sorted(set(data) - set(_FIELDS))
        if extra:
            raise InvalidSpecError(f"preprocess spec: unknown keys {extra}; expected {list(_FIELDS)}")
        missing = [k for k in _FIELDS if k not in data and k != "channels"]
        if missing:
            raise InvalidSpecError(f"preprocess spec: missing keys {missing}")
        return cls(
            size_hw=tuple(data["size_hw"]),  # type: ignore[arg-type]
            mean=tuple(data["mean"]),  # type: ignore[arg-type]
            std=tuple(data["std"]),  # type: ignore[arg-type]
            resize=data["resize"],
            channels=data.get("channels", "rgb"),
        )

    def canonical_json(self) -> str:
        """The exact text :meth:`hash` digests: sorted keys, no whitespace, floats via ``repr``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def hash(self) -> str:
        """First 16 hex chars of the SHA-256 of :meth:`canonical_json`; stable across runs and hosts."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:16]
