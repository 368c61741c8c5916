"""The backbone registry: what a family registers (name, feature size, preprocessing spec, builder) and
the functions that read it or build a :class:`Backbone` from it.

Families (``efficientnet_lite``, ``torchvision_models``, ``timm_models``) register themselves when
:mod:`nexara.backbones` is imported. Every backbone registered today is of kind ``"frame"`` (uint8
frames ``(N, H, W, 3)`` in, ``(N, D)`` features out); the registry's ``kind`` leaves room for clip
backbones beside them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
from torch import nn

from nexara.backbones.module import Backbone
from nexara.backbones.spec import PreprocessSpec
from nexara.backbones.weights import WeightsArg
from nexara.registry import Registry

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneEntry",
    "create_backbone",
    "get_feature_dim",
    "get_spec",
    "list_backbones",
    "register_backbone",
]

_logger = logging.getLogger(__name__)

DEFAULT_BACKBONE: Final = "efficientnet_lite0"

# (name, weights, pretrained) -> (trunk, ImageNet head or None, where the weights came from or None)
BackboneBuilder = Callable[[str, WeightsArg, bool], tuple[nn.Module, "nn.Module | None", "str | None"]]


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


BACKBONES: Final[Registry[BackboneEntry]] = Registry("backbone", default_kind="frame")


def register_backbone(entry: BackboneEntry, *, kind: str | None = None) -> None:
    """Make ``entry`` buildable by name (kind ``"frame"`` unless given)."""
    BACKBONES.add(entry.name, entry, kind=kind)


def list_backbones(kind: str | None = None) -> list[str]:
    """Names :func:`create_backbone` accepts, sorted; only those of ``kind`` when given."""
    return BACKBONES.names(kind)


def get_spec(name: str) -> PreprocessSpec:
    """The preprocessing spec of backbone ``name``, without building the model."""
    return BACKBONES.get(name).spec


def get_feature_dim(name: str) -> int:
    """Feature vector length of backbone ``name``, without building the model."""
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
    entry = BACKBONES.get(name)
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
