"""Backbone registry: offline EfficientNet-Lite0 accuracy on real photos, shapes and dtypes of every
registered backbone (random weights), preprocessing-spec hashing, and weight resolution that never
downloads."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nexara.backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    IncompatibleWeightsError,
    InvalidFramesError,
    InvalidSpecError,
    PreprocessSpec,
    create_backbone,
    get_feature_dim,
    get_spec,
    list_backbones,
    load_weights,
    read_state_dict,
)
from nexara.backbones.efficientnet_lite import EfficientNetLite, lite_weights_path
from nexara.errors import ModelError, UnknownModelError, WeightsNotFoundError

pytestmark = pytest.mark.unit

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
EXPECTED_DIMS = {
    "efficientnet_lite0": 1280,
    "efficientnet_lite1": 1280,
    "efficientnet_lite2": 1280,
    "resnet18": 512,
    "resnet50": 2048,
    "mobilenet_v3_large": 960,
    "efficientnet_b0": 1280,
    "resnetv2_50": 2048,
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download (torch hub, HF hub, urllib) fails loudly instead of reaching out."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _resize(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The frame pipeline's resize under the spec's policy (PIL squash where nexara.media is absent)."""
    try:
        from nexara.media import resize_frame
    except ImportError:
        assert spec.resize == "squash"
        h, w = spec.size_hw
        return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
    return resize_frame(img, spec.size_hw, spec.resize)


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# --- EfficientNet-Lite0, the offline default -----------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return create_backbone("efficientnet_lite0")


def test_default_is_lite0_and_registered() -> None:
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    assert DEFAULT_BACKBONE in list_backbones()


def test_lite0_checkpoint_loads_strictly() -> None:
    net = EfficientNetLite.from_variant(0)
    sd = read_state_dict(lite_weights_path(0))
    assert set(sd) == set(net.state_dict())
    result = load_weights(net, sd, name="efficientnet_lite0")
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    for key, value in sd.items():
        assert torch.equal(net.state_dict()[key], value), key


def test_lite0_spec() -> None:
    spec = get_spec("efficientnet_lite0")
    assert spec == PreprocessSpec((224, 224), (127, 127, 127), (128, 128, 128), "squash")


def test_lite0_classifies_cat(lite0: Backbone) -> None:
    skdata = pytest.importorskip("skimage.data")
    photo = skdata.chelsea()  # (300, 451, 3) tabby cat
    resized = _resize(photo, lite0.spec)[None]
    top1 = int(lite0.classify(resized).argmax(dim=1))
    assert top1 in CAT_CLASSES
    # Handed the raw photo, the backbone resizes it itself (bilinear, antialiased) and agrees.
    assert int(lite0.classify(photo[None]).argmax(dim=1)) in CAT_CLASSES


def test_lite0_classifies_coffee(lite0: Backbone) -> None:
    skdata = pytest.importorskip("skimage.data")
    resized = _resize(skdata.coffee(), lite0.spec)[None]
    assert int(lite0.classify(resized).argmax(dim=1)) in COFFEE_CLASSES


def test_lite0_features_match_manual_preprocessing(lite0: Backbone) -> None:
    frames = _frames(3, 224, 224)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        expected = lite0.trunk(x)
    got = lite0(frames)
    assert got.shape == (3, 1280) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # the logits are the classifier applied to exactly these features
    torch.testing.assert_close(lite0.classify(frames), lite0.head(got), rtol=1e-4, atol=1e-4)


def test_lite0_eval_no_grad_and_inference_mode(lite0: Backbone) -> None:
    assert not lite0.training
    frames = _frames(2, 224, 224)
    feats = lite0(frames)
    assert not feats.requires_grad
    with torch.inference_mode():
        torch.testing.assert_close(lite0(frames), feats)
    # read-only arrays (as decoders hand out) are fine
    frames.flags.writeable = False
    torch.testing.assert_close(lite0(frames), feats)


def test_bad_frames_raise(lite0: Backbone) -> None:
    with pytest.raises(InvalidFramesError, match="uint8"):
        lite0(np.zeros((1, 224, 224, 3), dtype=np.float32))
    with pytest.raises(InvalidFramesError, match=r"\(N, H, W, 3\)"):
        lite0(np.zeros((224, 224, 3), dtype=np.uint8))
    with pytest.raises(InvalidFramesError, match=r"\(N, H, W, 3\)"):
        lite0(torch.zeros((1, 3, 224, 224), dtype=torch.uint8))
    with pytest.raises(InvalidFramesError, match="uint8"):
        lite0(np.zeros((0, 224, 224, 3), dtype=np.float32))
    empty = lite0(np.zeros((0, 224, 224, 3), dtype=np.uint8))
    assert empty.shape == (0, 1280) and empty.dtype == torch.float32
    assert lite0.classify(np.zeros((0, 224, 224, 3), dtype=np.uint8)).shape == (0, 1000)


# --- every registered backbone, random weights ---------------------------------------------------


@pytest.fixture(scope="module", params=list_backbones())
def random_backbone(request: pytest.FixtureRequest) -> Iterator[Backbone]:
    torch.manual_seed(0)
    yield create_backbone(request.param, pretrained=False)


def test_registered_dims(random_backbone: Backbone) -> None:
    assert random_backbone.feature_dim == EXPECTED_DIMS[random_backbone.name]
    assert get_feature_dim(random_backbone.name) == random_backbone.feature_dim
    assert random_backbone.weights_source is None
    assert not random_backbone.training


def test_features_numpy_and_torch(random_backbone: Backbone) -> None:
    h, w = random_backbone.spec.size_hw
    frames = _frames(2, h, w)
    from_numpy = random_backbone(frames)
    from_torch = random_backbone(torch.from_numpy(frames))
    assert from_numpy.shape == (2, random_backbone.feature_dim)
    assert from_numpy.dtype == torch.float32
    assert torch.isfinite(from_numpy).all()
    torch.testing.assert_close(from_numpy, from_torch)


def test_non_spec_size_and_classify(random_backbone: Backbone) -> None:
    frames = _frames(2, 90, 160, seed=1)  # 16:9, not the spec size: resized inside, never rejected
    feats = random_backbone(frames)
    assert feats.shape == (2, random_backbone.feature_dim)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    logits = random_backbone.classify(frames[:1])
    assert logits.shape == (1, 1000) and logits.dtype == torch.float32


def test_spec_hash_stable(random_backbone: Backbone) -> None:
    spec = get_spec(random_backbone.name)
    assert random_backbone.spec == spec
    assert random_backbone.spec_hash == spec.hash()
    assert len(spec.hash()) == 16 and int(spec.hash(), 16) >= 0
    round_trip = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert round_trip == spec and round_trip.hash() == spec.hash()


def test_spec_hash_pinned() -> None:
    # Pinned so a change to the canonical JSON (which would orphan every manifest) is noticed.
    assert get_spec("efficientnet_lite0").hash() == "6072e8b41f793e57"


def test_spec_hashes_differ_exactly_when_specs_differ() -> None:
    specs = {name: get_spec(name) for name in list_backbones()}
    for a, b in itertools.combinations(specs, 2):
        assert (specs[a] == specs[b]) == (specs[a].hash() == specs[b].hash()), (a, b)
    assert get_spec("efficientnet_lite0").hash() != get_spec("resnet50").hash()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0"])
def test_torchvision_spec_matches_weights_transforms(name: str) -> None:
    import torchvision.models

    from nexara.backbones.torchvision_models import _TORCHVISION

    tv = _TORCHVISION[name]
    transforms = getattr(torchvision.models, tv.weights_enum)[tv.weights_member].transforms()
    spec = get_spec(name)
    assert spec.size_hw == (transforms.crop_size[0], transforms.crop_size[0])
    np.testing.assert_allclose(spec.mean, np.array(transforms.mean) * 255, rtol=1e-6)
    np.testing.assert_allclose(spec.std, np.array(transforms.std) * 255, rtol=1e-6)


def test_spec_normalises_and_validates() -> None:
    a = PreprocessSpec((224, 224), (127, 127, 127), (128, 128, 128), "squash")
    b = PreprocessSpec([224, 224], [127.0] * 3, [128.0] * 3, "squash")  # type: ignore[arg-type]
    assert a == b and a.hash() == b.hash()
    assert a.hash() != PreprocessSpec((224, 224), (127,) * 3, (128,) * 3, "letterbox").hash()  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="resize"):
        PreprocessSpec((224, 224), (0,) * 3, (1,) * 3, "stretch")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="std"):
        PreprocessSpec((224, 224), (0,) * 3, (1, 0, 1), "squash")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="unknown keys"):
        PreprocessSpec.from_dict({**a.to_dict(), "interpolation": "bicubic"})
    with pytest.raises(InvalidSpecError, match="missing"):
        PreprocessSpec.from_dict({"size_hw": [224, 224]})


# --- weight resolution: torch hub folder, explicit paths, bad checkpoints ------------------------


def test_torchvision_weights_missing_then_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("resnet18")
    message = str(info.value)
    assert str(expected) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "--weights" in message

    torch.manual_seed(1)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(saved, expected)
    bb = create_backbone("resnet18")
    assert bb.weights_source == str(expected)
    loaded = {**{f"{k}": v for k, v in bb.trunk.state_dict().items() if not k.startswith("fc.")}}
    loaded.update({f"fc.{k}": v for k, v in bb.head.state_dict().items()})  # type: ignore[union-attr]
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key


def test_weights_path_and_full_checkpoint(tmp_path: Path) -> None:
    import torchvision.models

    torch.manual_seed(2)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(saved, plain)
    wrapped = tmp_path / "wrapped.pt"  # a training checkpoint from a DataParallel run
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saved.items()}}, wrapped)
    for path in (plain, wrapped):
        bb = create_backbone("resnet18", weights=path, pretrained=False)
        assert bb.weights_source == str(path)
        assert torch.equal(bb.trunk.state_dict()["conv1.weight"], saved["conv1.weight"])
        assert torch.equal(bb.head.weight, saved["fc.weight"])  # type: ignore[union-attr]


def test_wrong_checkpoint_raises_model_error(tmp_path: Path) -> None:
    import torchvision.models

    sd = torchvision.models.resnet18(weights=None).state_dict()
    renamed = dict(sd)
    renamed["conv_one.weight"] = renamed.pop("conv1.weight")
    bad_keys = tmp_path / "bad_keys.pth"
    torch.save(renamed, bad_keys)
    with pytest.raises(IncompatibleWeightsError, match=r"conv_one\.weight") as info:
        create_backbone("resnet18", weights=bad_keys)
    assert isinstance(info.value, ModelError) and "conv1.weight" in str(info.value)

    reshaped = dict(sd)
    reshaped["fc.weight"] = torch.zeros(10, 512)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save(reshaped, bad_shape)
    with pytest.raises(IncompatibleWeightsError, match="shape"):
        create_backbone("resnet18", weights=bad_shape)

    # the Lite0 checkpoint into ResNet18: wrong architecture, clear error
    with pytest.raises(IncompatibleWeightsError, match="resnet18"):
        create_backbone("resnet18", weights=lite_weights_path(0))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        create_backbone("resnet18", weights=garbage)

    with pytest.raises(WeightsNotFoundError, match=r"nope\.pth"):
        create_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth")


def test_timm_weights_missing_names_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "resnetv2_50" not in list_backbones():
        pytest.skip("timm not installed")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("resnetv2_50")
    assert str(tmp_path) in str(info.value) and "--weights" in str(info.value)


# --- registry ------------------------------------------------------------------------------------


def test_unknown_name() -> None:
    with pytest.raises(UnknownModelError, match="efficientnet_lite0") as info:
        create_backbone("vgg16")
    assert "vgg16" in str(info.value)
    with pytest.raises(UnknownModelError):
        get_spec("vgg16")
    with pytest.raises(UnknownModelError):
        get_feature_dim("vgg16")
