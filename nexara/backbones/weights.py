"""Reading checkpoints (``.pth``/``.pt``/``.bin``/``.safetensors``, never unpickling arbitrary objects)
and loading them strictly, with errors that list the offending keys."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nexara.errors import IncompatibleWeightsError, ModelError, WeightsNotFoundError

__all__ = ["IncompatibleWeightsError", "WeightsArg", "load_weights", "read_state_dict"]

_logger = logging.getLogger(__name__)

WeightsArg = str | os.PathLike[str] | None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` (``.pth``/``.pt``/``.bin`` or ``.safetensors``).

    A full training checkpoint with a ``state_dict`` or ``model`` entry is unwrapped, and a
    DataParallel ``module.`` prefix is removed. Never unpickles arbitrary objects (weights_only).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/pickle raise many types; all mean "unreadable"
        raise ModelError(f"cannot read weights {p}: {type(exc).__name__}: {exc}") from exc
    return _extract_state_dict(obj, str(p))


def _extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise IncompatibleWeightsError(f"{source}: not a state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise IncompatibleWeightsError(
            f"{source}: not a state_dict; {len(bad)} entries are not tensors, e.g. {bad[:3]}"
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_weights(
    module: nn.Module, weights: Mapping[str, torch.Tensor] | str | os.PathLike[str], *, name: str = "model"
) -> Any:
    """Load ``weights`` (a state_dict or a path) into ``module`` strictly.

    Returns torch's ``_IncompatibleKeys`` (both lists empty, since loading is strict). Any key or
    shape mismatch raises :class:`IncompatibleWeightsError` listing the offending keys instead of
    torch's RuntimeError.
    """
    if isinstance(weights, Mapping):
        source = "<state_dict>"
        sd = _extract_state_dict(weights, source)
    else:
        source = str(weights)
        sd = read_state_dict(weights)
    expected = module.state_dict()
    # Old torchvision checkpoints predate BatchNorm's num_batches_tracked counter; it only matters
    # for cumulative-average training, so a missing one is filled rather than rejected.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = value.clone()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:3]})")
        raise IncompatibleWeightsError(f"weights {source} do not fit '{name}': " + "; ".join(parts))
    try:
        result = module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # dtype or other surprises the pre-check did not catch
        raise IncompatibleWeightsError(f"weights {source} do not fit '{name}': {exc}") from exc
    _logger.info("loaded %d tensors into %s from %s", len(sd), name, source)
    return result
