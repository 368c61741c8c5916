"""ONNX export of the backbone and the shipped model's members, with parity against torch."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from nexara.model_manifest import read_manifest
from nexara.voting import DEFAULT_MODEL_DIR
from training.onnx_export import export_backbone, export_heads


def test_backbone_onnx_parity(tmp_path: Path) -> None:
    err = export_backbone("efficientnet_lite0", tmp_path / "lite0.onnx")
    assert err < 1e-3
    assert (tmp_path / "lite0.onnx").stat().st_size > 1_000_000


def test_member_heads_onnx_parity(tmp_path: Path) -> None:
    man = read_manifest(DEFAULT_MODEL_DIR)
    errors = export_heads(DEFAULT_MODEL_DIR, tmp_path, frames=man.frames_per_clip)
    assert set(errors) == {m.name for m in man.members}
    assert max(errors.values()) < 1e-4


def test_forest_head_onnx_parity(tmp_path: Path) -> None:
    """A fitted tree member (gathers over a fixed depth) exports and scores the same in onnxruntime."""
    import numpy as np
    import torch

    from nexara.heads import create_head
    from training.onnx_export import _export, parity

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 1, 20)).astype(np.float32)
    y = (x[:, 0, 0] + x[:, 0, 1] > 0).astype(np.int64)
    head = create_head("forest", 20, n_trees=30).fit(x, y, seed=0).eval()
    path = tmp_path / "forest.onnx"
    _export(head, torch.randn(2, 1, 20), path, {"input": {0: "batch"}, "output": {0: "batch"}})
    assert parity(head, path, torch.randn(7, 1, 20)) < 1e-5
