"""ONNX export of the backbone and the shipped model's members, with parity against torch."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from nexara.ensemble import DEFAULT_MODEL_DIR
from nexara.model_manifest import read_manifest
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
