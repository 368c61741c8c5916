"""The timm family: BiT ResNet-V2 with weights from the Hugging Face hub cache, offline only; registered
only where timm is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from nexara.backbones.factory import BackboneEntry, register_backbone
from nexara.backbones.spec import PreprocessSpec
from nexara.backbones.weights import WeightsArg, load_weights
from nexara.errors import WeightsNotFoundError

_TIMM_RESNETV2: Final = "resnetv2_50x1_bit.goog_distilled_in1k"
_HF_WEIGHT_FILES: Final = ("model.safetensors", "pytorch_model.bin")


class _ConvHeadAsLinear(nn.Module):
    """timm's BiT classifier is a 1x1 conv on the pooled map; apply it to a pooled (N, D) vector."""

    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.fc(x[:, :, None, None]), 1)


def _hf_cached_weights(repo_id: str) -> tuple[Path | None, Path]:
    """(cached weight file or None, cache folder looked in); purely local, no network."""
    from huggingface_hub import constants, try_to_load_from_cache

    cache_dir = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    for filename in _HF_WEIGHT_FILES:
        hit = try_to_load_from_cache(repo_id, filename)
        if isinstance(hit, str):
            return Path(hit), cache_dir
    return None, cache_dir


def _build_timm(name: str, weights: WeightsArg, pretrained: bool) -> tuple[nn.Module, nn.Module, str | None]:
    import timm

    model: Any = timm.create_model(_TIMM_RESNETV2, pretrained=False)
    source: Path | None = None
    if weights is not None:
        source = Path(weights)
    elif pretrained:
        repo_id = str(model.pretrained_cfg.get("hf_hub_id") or f"timm/{_TIMM_RESNETV2}")
        source, cache_dir = _hf_cached_weights(repo_id)
        if source is None:
            raise WeightsNotFoundError(
                f"{name}: weights for {repo_id} not in the Hugging Face hub cache (looked for "
                f"{' or '.join(_HF_WEIGHT_FILES)} under {cache_dir}; HF_HOME / HF_HUB_CACHE move it). "
                f"Nothing is downloaded at run time: on a connected machine run `hf download {repo_id}` "
                f"and copy the cache folder here, or pass --weights PATH (weights=PATH), "
                f"or use pretrained=False for random weights"
            )
    if source is not None:
        if source.suffix == ".npz":  # Google's original BiT release; timm converts it itself
            if not source.is_file():
                raise WeightsNotFoundError(f"weights file not found: {source}")
            model.load_pretrained(str(source))
        else:
            load_weights(model, source, name=name)
    head = _ConvHeadAsLinear(model.get_classifier())
    model.reset_classifier(0)  # forward() now returns the pooled 2048-d pre-logits
    return model, head, str(source) if source else None


def _register_timm() -> None:
    if importlib.util.find_spec("timm") is None:
        return
    register_backbone(
        BackboneEntry(
            name="resnetv2_50",
            feature_dim=2048,
            # timm pretrained_cfg of the distilled BiT-M: 224 px centre crop, mean = std = 0.5 (x255)
            spec=PreprocessSpec((224, 224), (127.5,) * 3, (127.5,) * 3, "center_crop"),
            build=_build_timm,
        )
    )


_register_timm()
