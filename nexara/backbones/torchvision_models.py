"""The torchvision family: ImageNet weights read from the torch hub checkpoint folder, never
downloaded. The table of models, their feature sizes and their preprocessing spec sits next to the
builder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from nexara.backbones.factory import BackboneEntry, register_backbone
from nexara.backbones.spec import PreprocessSpec
from nexara.backbones.weights import WeightsArg, load_weights
from nexara.errors import WeightsNotFoundError

__all__ = ["torchvision_checkpoint_path", "torchvision_weights_url"]

_IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)  # (0.485, 0.456, 0.406) * 255
_IMAGENET_STD_255 = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) * 255
_TORCHVISION_SPEC = PreprocessSpec((224, 224), _IMAGENET_MEAN_255, _IMAGENET_STD_255, "center_crop")


@dataclass(frozen=True, slots=True)
class _TorchvisionModel:
    builder: str  # torchvision.models.<builder>
    weights_enum: str  # torchvision.models.<weights_enum>
    weights_member: str
    head_attr: str  # classifier attribute replaced by Identity in the trunk


_TORCHVISION: dict[str, _TorchvisionModel] = {
    "resnet18": _TorchvisionModel("resnet18", "ResNet18_Weights", "IMAGENET1K_V1", "fc"),
    "resnet50": _TorchvisionModel("resnet50", "ResNet50_Weights", "IMAGENET1K_V2", "fc"),
    "mobilenet_v3_large": _TorchvisionModel(
        "mobilenet_v3_large", "MobileNet_V3_Large_Weights", "IMAGENET1K_V2", "classifier"
    ),
    "efficientnet_b0": _TorchvisionModel("efficientnet_b0", "EfficientNet_B0_Weights", "IMAGENET1K_V1", "classifier"),
}
_TORCHVISION_DIMS = {"resnet18": 512, "resnet50": 2048, "mobilenet_v3_large": 960, "efficientnet_b0": 1280}


def torchvision_weights_url(name: str) -> str:
    """Download URL of the ImageNet weights a torchvision backbone uses (for messages; never fetched)."""
    import torchvision.models

    tv = _TORCHVISION[name]
    return str(getattr(torchvision.models, tv.weights_enum)[tv.weights_member].url)


def torchvision_checkpoint_path(name: str) -> Path:
    """Where torch hub keeps that checkpoint: ``torch.hub.get_dir()/checkpoints/<url basename>``.

    ``torch.hub.get_dir()`` honours ``TORCH_HOME`` (default ``~/.cache/torch/hub``).
    """
    url = torchvision_weights_url(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _build_torchvision(name: str, weights: WeightsArg, pretrained: bool) -> tuple[nn.Module, nn.Module, str | None]:
    import torchvision.models

    tv = _TORCHVISION[name]
    model: nn.Module = getattr(torchvision.models, tv.builder)(weights=None)
    source: Path | None = None
    if weights is not None:
        source = Path(weights)
    elif pretrained:
        source = torchvision_checkpoint_path(name)
        if not source.is_file():
            url = torchvision_weights_url(name)
            raise WeightsNotFoundError(
                f"{name}: ImageNet weights not found at {source} (torch hub checkpoint folder; "
                f"TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')}). Nothing is downloaded at run time: "
                f"on a connected machine download {url} into {source.parent}/ "
                f"(e.g. `curl -L -o {source} {url}`) and copy it here, or pass --weights PATH "
                f"(weights=PATH), or use pretrained=False for random weights"
            )
    if source is not None:
        load_weights(model, source, name=name)
    head = getattr(model, tv.head_attr)
    setattr(model, tv.head_attr, nn.Identity())
    return model, head, str(source) if source else None


def _register_torchvision() -> None:
    for name in _TORCHVISION:
        register_backbone(
            BackboneEntry(
                name=name,
                feature_dim=_TORCHVISION_DIMS[name],
                spec=_TORCHVISION_SPEC,
                build=_build_torchvision,
            )
        )


_register_torchvision()
