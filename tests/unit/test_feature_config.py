"""manifest -> FeatureConfig: the one record every inference path computes a clip's inputs from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nexara.backbones import get_spec
from nexara.errors import ModelError
from nexara.model_manifest import feature_config, read_manifest
from nexara.motion import MotionSpec
from nexara.voting import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.unit


def test_default_model_feature_config() -> None:
    man = read_manifest(DEFAULT_MODEL_DIR)
    fc = feature_config(man)
    assert (fc.backbone, fc.frames_per_clip, fc.size_hw, fc.resize) == (
        man.backbone,
        man.frames_per_clip,
        tuple(man.preprocessing.size_hw),
        man.preprocessing.resize,
    )
    assert fc.needs_motion and fc.motion == MotionSpec()
    fc.check_backbone(man.backbone, get_spec(man.backbone))  # the shipped model fits this build


def test_motion_spec_mismatch_fails_at_load() -> None:
    man = read_manifest(DEFAULT_MODEL_DIR)
    assert man.motion is not None
    stale = man.model_copy(update={"motion": man.motion.model_copy(update={"hash": "0" * 16})})
    with pytest.raises(ModelError, match="motion statistics"):
        feature_config(stale)


def test_appearance_only_model_needs_no_motion() -> None:
    man = read_manifest(DEFAULT_MODEL_DIR)
    members = [m.model_copy(update={"input": "appearance"}) for m in man.members]
    fc = feature_config(man.model_copy(update={"members": members, "motion": None}))
    assert not fc.needs_motion and fc.motion is None


def test_other_backbone_or_preprocessing_is_refused() -> None:
    fc = feature_config(read_manifest(DEFAULT_MODEL_DIR))
    with pytest.raises(ModelError, match="expects backbone"):
        fc.check_backbone("resnet18", get_spec("resnet18"))
    other = replace(get_spec(fc.backbone), size_hw=(240, 240))
    with pytest.raises(ModelError, match="expects backbone"):
        fc.check_backbone(fc.backbone, other)
