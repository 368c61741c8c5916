"""The backbone registry: what a family registers (name, feature size, preprocessing spec, builder) and
the functions that read it or build a :class:`Backbone` from it.

Families (``efficientnet_lite``, ``torchvision_models``, ``timm_models``, ``i3d``) register themselves when
:mod:`nexara.backbones` is imported. A backbone is of kind ``"frame"`` (uint8 frames ``(N, H, W, 3)`` in,
``(N, D)`` features out; a :class:`BackboneEntry` with a :class:`PreprocessSpec`, built by
:func:`create_backbone`) or ``"clip"`` (uint8 windows ``(N, T, H, W, 3)`` in, ``(N, D)`` per-window and
``(N, T', D)`` per-time features out; a :class:`ClipBackboneEntry` with a :class:`ClipSpec`, built by
:func:`create_clip_backbone`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import torch
from torch import nn

from nexara.backbones.clip import ClipBackbone
from nexara.backbones.module import Backbone
from nexara.backbones.spec import ClipSpec, PreprocessSpec
from nexara.backbones.weights import WeightsArg
from nexara.errors import ModelError
from nexara.registry import Registry

if TYPE_CHECKING:
    from nexara.config import NexaraConfig

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneEntry",
    "ClipBackboneEntry",
    "backbone_kind",
    "create_backbone",
    "create_clip_backbone",
    "effective_clip_spec",
    "get_clip_spec",
    "get_feature_dim",
    "get_spec",
    "list_backbones",
    "register_backbone",
]

_logger = logging.getLogger(__name__)

DEFAULT_BACKBONE: Final = "efficientnet_lite0"

# (name, weights, pretrained) -> (trunk, ImageNet head or None, where the weights came from or None)
BackboneBuilder = Callable[[str, WeightsArg, bool], tuple[nn.Module, "nn.Module | None", "str | None"]]
# (name, weights, pretrained) -> (net returning pooled/per_time/logits, where the weights came from or None)
ClipBuilder = Callable[[str, WeightsArg, bool], tuple[nn.Module, "str | None"]]


@dataclass(frozen=True, slots=True)
class BackboneEntry:
    """What a family registers for one backbone name."""

    name: str
    feature_dim: int
    spec: PreprocessSpec
    build: BackboneBuilder
    # NHWC convolutions: on a 2-core CPU with one thread, batch 16, channels_last was faster for every
    # registered family (EfficientNet-Lite0 ~1.3x, MobileNetV3/EfficientNet-B0 ~1.5x, ResNets ~1.2x).
    channels_last: bool = True


@dataclass(frozen=True, slots=True)
class ClipBackboneEntry:
    """What a family registers for one clip backbone name; ``spec`` is its default profile (a run may
    change T, window length and input size, see ``model.frames_per_window`` / ``model.crop_px``)."""

    name: str
    feature_dim: int
    spec: ClipSpec
    build: ClipBuilder


BACKBONES: Final[Registry[BackboneEntry | ClipBackboneEntry]] = Registry("backbone", default_kind="frame")


def register_backbone(entry: BackboneEntry | ClipBackboneEntry, *, kind: str | None = None) -> None:
    """Make ``entry`` buildable by name (kind ``"frame"`` unless given; a clip entry must say ``"clip"``)."""
    if (kind == "clip") != isinstance(entry, ClipBackboneEntry):
        raise ValueError(f"backbone {entry.name!r}: a ClipBackboneEntry is registered with kind='clip', and only it")
    BACKBONES.add(entry.name, entry, kind=kind)


def list_backbones(kind: str | None = "frame") -> list[str]:
    """Registered names of ``kind``, sorted: by default the frame backbones (what :func:`create_backbone`
    accepts), ``"clip"`` for :func:`create_clip_backbone`, ``None`` for every kind."""
    return BACKBONES.names(kind)


def backbone_kind(name: str) -> str:
    """``"frame"`` or ``"clip"`` (UnknownModelError for an unregistered name)."""
    return BACKBONES.entry(name).kind


def _frame_entry(name: str) -> BackboneEntry:
    entry = BACKBONES.get(name)
    if not isinstance(entry, BackboneEntry):
        raise ModelError(
            f"backbone {name!r} is a clip backbone (windows in, not frames): use get_clip_spec / create_clip_backbone"
        )
    return entry


def _clip_entry(name: str) -> ClipBackboneEntry:
    entry = BACKBONES.get(name)
    if not isinstance(entry, ClipBackboneEntry):
        raise ModelError(f"backbone {name!r} is a frame backbone, not a clip backbone")
    return entry


def get_spec(name: str) -> PreprocessSpec:
    """The preprocessing spec of frame backbone ``name``, without building the model."""
    return _frame_entry(name).spec


def get_clip_spec(name: str) -> ClipSpec:
    """The default clip spec of clip backbone ``name``, without building the model."""
    return _clip_entry(name).spec


def effective_clip_spec(cfg: NexaraConfig) -> ClipSpec:
    """The configured clip backbone's spec for this run: its profile with the live window length
    (``windows.window_s``) and, when set, ``model.frames_per_window``, ``model.crop_px`` (the short and
    decode sides keep the profile's ratio to the crop, 256:224 for I3D) and ``model.motion_crop``."""
    base = get_clip_spec(cfg.model.backbone)
    crop_px = cfg.model.crop_px or base.crop_px
    scale = crop_px / base.crop_px
    motion_crop = base.motion_crop if cfg.model.motion_crop is None else cfg.model.motion_crop
    decode_short = round(base.decode_short_px * scale) if motion_crop else None
    return replace(
        base,
        num_frames=cfg.model.frames_per_window or base.num_frames,
        window_s=cfg.windows.window_s,
        crop_px=crop_px,
        short_side_px=round(base.short_side_px * scale),
        motion_crop=motion_crop,
        decode_short_side_px=decode_short,
    )


def get_feature_dim(name: str) -> int:
    """Feature vector length of backbone ``name`` (either kind), without building the model."""
    return BACKBONES.get(name).feature_dim


def create_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    autocast: bool = True,
) -> Backbone:
    """Build backbone ``name`` in eval mode on ``device``.

    ``weights``: a checkpoint path, loaded strictly (wins over everything else).
    ``pretrained``: without ``weights``, load the backbone's offline default weights (raising
    WeightsNotFoundError naming where they were looked for when absent); False builds random weights.
    ``autocast``: on CUDA, run eval-mode forward passes under float16 autocast.
    """
    entry = _frame_entry(name)
    trunk, head, source = entry.build(name, weights, pretrained)
    backbone = Backbone(
        name,
        trunk,
        head,
        entry.spec,
        entry.feature_dim,
        weights_source=source,
        channels_last=entry.channels_last,
        autocast=autocast,
    )
    backbone.to(torch.device(device))
    _logger.info(
        "backbone %s ready on %s (features %d, spec %s, weights %s)",
        name,
        backbone.device,
        entry.feature_dim,
        backbone.spec_hash,
        source or "random",
    )
    return backbone


def create_clip_backbone(
    name: str,
    *,
    spec: ClipSpec | None = None,
    weights: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    autocast: bool = True,
) -> ClipBackbone:
    """Build clip backbone ``name`` in eval mode on ``device``, taking windows as ``spec`` says (default:
    the registered profile). ``weights``/``pretrained``/``autocast`` as for :func:`create_backbone`."""
    entry = _clip_entry(name)
    net, source = entry.build(name, weights, pretrained)
    backbone = ClipBackbone(name, net, spec or entry.spec, entry.feature_dim, weights_source=source, autocast=autocast)
    backbone.to(torch.device(device))
    _logger.info(
        "clip backbone %s ready on %s (features %d, spec %s: %s, weights %s)",
        name,
        backbone.device,
        entry.feature_dim,
        backbone.spec_hash,
        backbone.spec.describe(),
        source or "random",
    )
    return backbone
