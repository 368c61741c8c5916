"""ONNX export of the backbone and every ensemble member, with a parity check against torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nexara.errors import ExportError

log = logging.getLogger(__name__)


class _FloatBackbone(torch.nn.Module):
    """The backbone's float path (uint8 NHWC in, features out) as a plain traceable module."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backbone(frames)


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, dynamic_axes: dict[str, Any]) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' extra: uv sync --extra onnx") from None
    module.eval()
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes=dynamic_axes,
        opset_version=18,
        dynamo=False,
    )


def parity(module: torch.nn.Module, path: Path, example: torch.Tensor) -> float:
    """Max absolute difference between torch and onnxruntime outputs on ``example``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        ref = module(example).float().numpy()
    got = sess.run(None, {"input": example.numpy()})[0]
    return float(np.abs(ref - got).max())


def export_heads(model_dir: Path, out_dir: Path, *, frames: int, tol: float = 1e-4) -> dict[str, float]:
    """Every member of a model folder -> ``out_dir/<member>.onnx``; returns the parity error per member."""
    from nexara.voting import EnsembleModel

    model = EnsembleModel(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    errors: dict[str, float] = {}
    man = model.manifest
    for entry, head in zip(man.members, model.members, strict=True):
        name = entry.name
        if entry.input == "motion":
            assert man.motion is not None
            t, d = 1, man.motion.dim
        else:
            t, d = frames, man.feature_dim
        path = out_dir / f"{name}.onnx"
        _export(head, torch.randn(2, t, d), path, {"input": {0: "batch"}, "output": {0: "batch"}})
        errors[name] = parity(head, path, torch.randn(3, t, d))
        if errors[name] > tol:
            raise ExportError(f"member {name}: ONNX output differs from torch by {errors[name]:.2e} (> {tol:g})")
    return errors


def export_backbone(name: str, out_path: Path, *, weights: str | None = None, tol: float = 1e-3) -> float:
    from nexara.backbones import create_backbone

    bb = create_backbone(name, weights=weights)
    h, w = bb.spec.size_hw
    mod = _FloatBackbone(bb).eval()
    example = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _export(mod, example, out_path, {"input": {0: "batch"}, "output": {0: "batch"}})
    err = parity(mod, out_path, torch.randint(0, 256, (3, h, w, 3), dtype=torch.uint8))
    if err > tol:
        raise ExportError(f"backbone {name}: ONNX output differs from torch by {err:.2e} (> {tol:g})")
    return err
