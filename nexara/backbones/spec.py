"""The preprocessing contract between a frame source and a backbone (:class:`PreprocessSpec` for frame
backbones, :class:`ClipSpec` for clip backbones).

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

__all__ = ["ClipSpec", "InvalidSpecError", "PreprocessSpec", "ResizePolicy"]

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


ClipSampling = Literal["evenly"]
ClipCrop = Literal["center_crop"]
_CLIP_FIELDS = ("num_frames", "window_s", "sampling", "short_side_px", "crop_px", "crop", "value_range", "channels")
# optional fields: written (and hashed) only when they differ from these defaults, so the specs (and hashes)
# of recipes made before they existed are unchanged
_CLIP_OPTIONAL = {"motion_crop": 0.0, "decode_short_side_px": None}
# a motion-crop recipe decodes the whole picture (not the centre square): at most this wide an aspect ratio
_WIDE_ASPECT = 16 / 9


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """How a window of a video becomes a clip backbone's input ``(3, T, crop, crop)``.

    ``num_frames`` (T) frames are taken ``sampling="evenly"`` over ``window_s`` seconds (first and last
    frame of the window included, so the sampling rate is about ``T / window_s`` frames/s; a clip
    shorter than the window gives one window over the whole clip). Each frame's short side is scaled to
    ``short_side_px``, then the centre ``crop_px`` square is cut (``crop="center_crop"``), and uint8
    values are mapped linearly onto ``value_range``. :meth:`hash` covers every field, so features or
    a model made with one recipe (T, window length, crop) are refused by another.

    ``motion_crop`` > 0 adds a second view of each window: the square of side ``motion_crop`` x the
    decoded short side where the frame differences of the window's T frames carry the most energy
    (:func:`nexara.backbones.clip.motion_box`), resized to ``crop_px``; the backbone's features are the
    mean of the two views' (in wide street views people are small: the box zooms in where they move).
    Frames are then decoded whole (up to a 16:9 picture) with the short side at ``decode_short_side_px``
    (default ``short_side_px``), so the box can lie anywhere in the picture at that resolution.
    """

    num_frames: int
    window_s: float
    short_side_px: int
    crop_px: int
    sampling: ClipSampling = "evenly"
    crop: ClipCrop = "center_crop"
    value_range: tuple[float, float] = (-1.0, 1.0)
    channels: Channels = "rgb"
    motion_crop: float = 0.0
    decode_short_side_px: int | None = None

    def __post_init__(self) -> None:
        try:
            t, short, crop_px = int(self.num_frames), int(self.short_side_px), int(self.crop_px)
            window_s = float(self.window_s)
            lo, hi = (float(v) for v in self.value_range)
            motion_crop = float(self.motion_crop)
            decode_short = short if self.decode_short_side_px is None else int(self.decode_short_side_px)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(f"clip spec: bad field in {self!r}: {exc}") from exc
        if not 0.0 <= motion_crop <= 1.0:
            raise InvalidSpecError(f"clip spec: motion_crop must be in [0, 1] (0 = no motion view), got {motion_crop}")
        if decode_short < short:
            raise InvalidSpecError(
                f"clip spec: decode_short_side_px ({decode_short}) must be >= short_side_px ({short})"
            )
        if motion_crop == 0.0 and decode_short != short:
            raise InvalidSpecError("clip spec: decode_short_side_px only applies with a motion crop (motion_crop > 0)")
        if t < 1 or not (math.isfinite(window_s) and window_s > 0):
            raise InvalidSpecError(f"clip spec: need num_frames >= 1 and window_s > 0, got {t} and {window_s}")
        if not 1 <= crop_px <= short:
            raise InvalidSpecError(f"clip spec: need 1 <= crop_px <= short_side_px, got {crop_px} and {short}")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InvalidSpecError(
                f"clip spec: value_range must be (low, high) with low < high, got {self.value_range}"
            )
        for name, value, allowed in (
            ("sampling", self.sampling, get_args(ClipSampling)),
            ("crop", self.crop, get_args(ClipCrop)),
            ("channels", self.channels, _CHANNELS),
        ):
            if value not in allowed:
                raise InvalidSpecError(f"clip spec: {name} must be one of {list(allowed)}, got {value!r}")
        object.__setattr__(self, "num_frames", t)
        object.__setattr__(self, "window_s", window_s)
        object.__setattr__(self, "short_side_px", short)
        object.__setattr__(self, "crop_px", crop_px)
        object.__setattr__(self, "value_range", (lo, hi))
        object.__setattr__(self, "motion_crop", motion_crop)
        object.__setattr__(self, "decode_short_side_px", None if decode_short == short else decode_short)

    @property
    def decode_short_px(self) -> int:
        """The short side frames are decoded at (``decode_short_side_px``, else ``short_side_px``)."""
        return self.decode_short_side_px or self.short_side_px

    @property
    def fps(self) -> float:
        """The sampling rate a window's frames come at (about; exact for ``sampling="evenly"``)."""
        return self.num_frames / self.window_s

    @property
    def decode_size_hw(self) -> tuple[int, int]:
        """What a decoder should deliver under the ``center_crop`` resize policy: without a motion crop,
        the short side at ``short_side_px`` and its centre square, from which the backbone cuts the centre
        ``crop_px``; with one, the whole 16:9 picture at ``decode_short_px`` (a narrower source loses
        its top and bottom edges, a wider one its sides), where the motion box may lie anywhere."""
        if self.motion_crop == 0.0:
            return self.short_side_px, self.short_side_px
        h = self.decode_short_px
        return h, 2 * round(h * _WIDE_ASPECT / 2)

    def frame_spec(self) -> PreprocessSpec:
        """The per-frame part of this spec (input size, normalisation to ``value_range``, crop policy)."""
        lo, hi = self.value_range
        std = 255.0 / (hi - lo)
        return PreprocessSpec((self.crop_px, self.crop_px), (-lo * std,) * 3, (std,) * 3, "center_crop", self.channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {
            "num_frames": self.num_frames,
            "window_s": self.window_s,
            "sampling": self.sampling,
            "short_side_px": self.short_side_px,
            "crop_px": self.crop_px,
            "crop": self.crop,
            "value_range": list(self.value_range),
            "channels": self.channels,
            **{k: getattr(self, k) for k, default in _CLIP_OPTIONAL.items() if getattr(self, k) != default},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error, not ignored (the optional
        ``motion_crop`` / ``decode_short_side_px`` may be absent)."""
        if not isinstance(data, Mapping):
            raise InvalidSpecError(f"clip spec: expected a mapping, got {type(data).__name__}")
        extra = sorted(set(data) - set(_CLIP_FIELDS) - set(_CLIP_OPTIONAL))
        missing = [k for k in _CLIP_FIELDS if k not in data]
        if extra or missing:
            raise InvalidSpecError(
                f"clip spec: unknown keys {extra}, missing keys {missing}; expected {list(_CLIP_FIELDS)}"
            )
        return cls(
            num_frames=data["num_frames"],
            window_s=data["window_s"],
            short_side_px=data["short_side_px"],
            crop_px=data["crop_px"],
            sampling=data["sampling"],
            crop=data["crop"],
            value_range=tuple(data["value_range"]),  # type: ignore[arg-type]
            channels=data["channels"],
            **{k: data[k] for k in _CLIP_OPTIONAL if k in data},
        )

    def describe(self) -> str:
        """One line for people: ``T=32 evenly over 2 s (16 fps), short side 256, centre crop 224, [-1, 1]``."""
        lo, hi = self.value_range
        motion = (
            f" + motion crop {self.motion_crop:g} x short side {self.decode_short_px} (views averaged)"
            if self.motion_crop
            else ""
        )
        return (
            f"T={self.num_frames} {self.sampling} over {self.window_s:g} s ({self.fps:g} fps), short side "
            f"{self.short_side_px}, centre crop {self.crop_px}{motion}, [{lo:g}, {hi:g}]"
        )

    def canonical_json(self) -> str:
        """The exact text :meth:`hash` digests; ``kind`` keeps it apart from every frame spec's."""
        return json.dumps({"kind": "clip", **self.to_dict()}, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def hash(self) -> str:
        """First 16 hex chars of the SHA-256 of :meth:`canonical_json`; stable across runs and hosts."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:16]
