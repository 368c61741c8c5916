"""One model runtime built from the manifest: what ``nexara predict``, Ray Data batch predict, the HTTP
predict route and the Serve deployments score with, so the compatibility checks live here, once.

:meth:`ModelRuntime.from_manifest` reads the manifest, checks it (:func:`~nexara.model_manifest.feature_config`
plus the backbone's registered spec and feature size) and loads the members. It knows which inputs the
members read (:attr:`ModelRuntime.reads`) and builds only those, lazily:

* ``"frame"``: frame backbone features ``(N, T, D)``, T frames evenly over a clip embedded by a frame CNN
  (a member reading ``appearance`` of a model on a frame backbone);
* ``"clip"``: clip backbone features ``(N, T', D)``, the per-time features of one window of the manifest's
  clip spec (``appearance`` of a model on a clip backbone, ``manifest.clip`` set);
* ``"motion"``: flow statistics ``(N, K)`` (:mod:`nexara.motion`).

A motion-only model never builds a CNN (nor imports torchvision or timm); :attr:`ModelRuntime.built` says
what was built. The stages, decode -> embed -> score -> aggregate, can run in one process
(:meth:`ModelRuntime.predict`) or apart (the Serve app decodes in the ingress, embeds in the batched
backbone deployment and scores in the ensemble deployment)::

    rt = ModelRuntime.from_manifest()                  # the shipped model, device "auto"
    clip = rt.predict("fight.mp4")                     # ClipScore: .verdict() is the JSON verdict dict
    decoded = rt.decode(source)                        # DecodedClip: uint8 frames / windows + motion rows
    inputs = rt.embed(decoded)                         # ModelInputs: what the members read
    scores = rt.score(inputs.appearance, inputs.motion)  # Scores: one row per clip or window
    clip_row = rt.aggregate(scores)                    # Scores: windows -> one clip row
    rt.embed_frames(frames)    # (n, D) float32; (n, 0) when no member reads frame features
    rt.embed_windows(windows)  # WindowFeatures: pooled (n, D) and per_time (n, T', D) float32
    rt.check_inputs(appearance, motion)  # ModelInputs, validated (InvalidInputError naming the problem)
    rt.check_frames(frames); rt.check_windows(windows)  # the uint8 arrays the embed methods take

Decoding alone (no torch) is :class:`nexara.clip_decode.ClipDecoder` (``rt.decoder``).

A model on a clip backbone scores a finite clip as it was trained: windows of ``clip.window_s`` every
``window_hop_s`` (:func:`nexara.media.sample_windows`), each with the flow statistics of its own time
span, one score per window; the clip's score is the maximum over windows (``clip_aggregation`` in the
manifest: ``max`` or ``mean``). Bad inputs raise :class:`~nexara.errors.InvalidInputError`, an
incompatible model :class:`~nexara.errors.ModelError` at load, an unreadable video a
:class:`~nexara.errors.MediaError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nexara.clip_decode import DEFAULT_MAX_DECODE_MB, ClipDecoder, DecodedClip, Input
from nexara.errors import InvalidInputError, ModelError
from nexara.model_manifest import FeatureConfig
from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel

if TYPE_CHECKING:
    from nexara.backbones import Backbone, ClipBackbone
    from nexara.media import Source
    from nexara.motion import MotionSpec

__all__ = [
    "ClipScore",
    "DecodedClip",
    "ModelInputs",
    "ModelRuntime",
    "Scores",
    "WindowFeatures",
    "check_inputs",
    "resolve_device",
    "score_members",
]

logger = logging.getLogger(__name__)

Aggregation = Literal["max", "mean"]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cuda"`` without one is refused."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device cuda requested but torch sees no GPU")
    return device


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """What the members read for N items (clips or windows); None where no member reads it.
    ``appearance``: ``(N, T, D)`` float32 (frame features, or a clip backbone's per-time features);
    ``motion``: ``(N, K)`` float32 flow statistics."""

    appearance: np.ndarray | None
    motion: np.ndarray | None


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """A clip backbone's features of N windows: ``pooled`` ``(N, D)`` and ``per_time`` ``(N, T', D)``, float32."""

    pooled: np.ndarray
    per_time: np.ndarray


@dataclass(frozen=True, slots=True)
class Scores:
    """The ensemble's answer for N items: calibrated probability ``(N,)``, decision ``(N,)`` bool, tier,
    member probabilities ``(N, M)``."""

    probability: np.ndarray
    violent: np.ndarray
    confidence: tuple[str, ...]
    member_probs: np.ndarray
    member_names: tuple[str, ...]
    threshold: float
    model_version: str

    def __len__(self) -> int:
        return len(self.probability)

    def verdict(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the verdict dict shared by a CLI record, an HTTP reply and a live window's score."""
        return {
            "violence_probability": round(float(self.probability[i]), 6),
            "violent": bool(self.violent[i]),
            "confidence": self.confidence[i],
            "threshold": self.threshold,
            "members": {n: round(float(p), 6) for n, p in zip(self.member_names, self.member_probs[i], strict=True)},
            "model_version": self.model_version,
        }

    def verdicts(self) -> list[dict[str, Any]]:
        return [self.verdict(i) for i in range(len(self))]


@dataclass(frozen=True, slots=True)
class ClipScore:
    """One clip's score: ``clip`` (one row) aggregated over ``windows`` (one row per window; the same
    single row for whole-clip models), spans in ``start_s``/``end_s``."""

    clip: Scores
    windows: Scores
    start_s: np.ndarray
    end_s: np.ndarray
    frames_used: int
    duration_s: float | None

    def verdict(self) -> dict[str, Any]:
        return self.clip.verdict(0)


def _rows(name: str, arr: Any, dim: int, *, per_time: bool) -> np.ndarray:
    """``arr`` as float32 ``(N, T, dim)`` (``per_time``) or ``(N, dim)``; InvalidInputError naming the shape."""
    try:
        x = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} input must be a numeric array, got {type(arr).__name__}") from None
    if not per_time and x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0]  # (N, 1, K): the temporal heads' view of one motion vector per item
    want = 3 if per_time else 2
    if x.ndim != want or x.shape[-1] != dim or (per_time and x.shape[1] < 1):
        shape = f"(N, T, {dim})" if per_time else f"(N, {dim})"
        raise InvalidInputError(f"expected {name} input {shape}, got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise InvalidInputError(f"{name} input holds NaN or infinite values")
    return x


def check_inputs(model: EnsembleModel, appearance: Any = None, motion: Any = None) -> ModelInputs:
    """The inputs ``model``'s members read, validated: ``appearance`` ``(N, T, D)`` float32 and ``motion``
    ``(N, K)`` (``(N, 1, K)`` accepted) with the same N; an input no member reads is ignored (None)."""
    man = model.manifest
    reads = {m.input for m in man.members}
    app = mot = None
    if "appearance" in reads:
        if appearance is None:
            raise InvalidInputError(f"model {man.version} reads appearance features; none given")
        app = _rows("appearance", appearance, man.feature_dim, per_time=True)
    if "motion" in reads:
        if motion is None:
            raise InvalidInputError(f"model {man.version} reads motion statistics; none given")
        mot = _rows("motion", motion, man.motion.dim if man.motion else 0, per_time=False)
    if app is not None and mot is not None and len(app) != len(mot):
        raise InvalidInputError(f"{len(app)} appearance rows but {len(mot)} motion rows")
    return ModelInputs(app, mot)


def score_members(model: EnsembleModel, appearance: Any = None, motion: Any = None) -> Scores:
    """Score N items with ``model``'s members, vote, temperature and threshold, from the inputs the members
    read (:func:`check_inputs`)."""
    import torch

    man = model.manifest
    inputs = check_inputs(model, appearance, motion)
    tensors = {}
    if inputs.appearance is not None:
        tensors["appearance"] = torch.from_numpy(inputs.appearance).to(model.device)
    if inputs.motion is not None:
        tensors["motion"] = torch.from_numpy(inputs.motion[:, None, :]).to(model.device)
    with torch.inference_mode():
        cols = [
            torch.sigmoid(h(tensors[m.input])).float().cpu().numpy()
            for h, m in zip(model.members, man.members, strict=True)
        ]
    out = model.combine(np.stack(cols, axis=1))
    return Scores(
        probability=np.asarray(out.probability, dtype=np.float64),
        violent=np.asarray(out.violent, dtype=bool),
        confidence=tuple(str(c) for c in out.confidence),
        member_probs=out.member_probs,
        member_names=tuple(model.names),
        threshold=man.threshold,
        model_version=man.version,
    )


class ModelRuntime:
    """A model manifest, checked once, its members loaded and the backbone its members read built on first
    use. Build it with :meth:`from_manifest`; see the module docstring for the API."""

    def __init__(self, model: EnsembleModel, *, device: str, weights: str | None = None) -> None:
        self.model = model
        self.manifest = model.manifest
        self.device = device
        # the backbone's weights: an explicit override (model.weights), else the model's own (a fine-tuned
        # backbone shipped in its folder), else the registry's stock weights
        own = self.manifest.backbone_weights
        self.weights = weights if weights is not None else (str(model.folder / own.file) if own else None)
        #: the first stage: what the members read, and clips decoded for them (manifest checked here)
        self.decoder = ClipDecoder(self.manifest)
        self.feature_config: FeatureConfig = self.decoder.feature_config
        #: the inputs the members read: a subset of {"frame", "clip", "motion"}
        self.reads: frozenset[Input] = self.decoder.reads
        #: how a clip's score is made of its windows' (the manifest's ``clip_aggregation``, default max)
        self.aggregation: Aggregation = self.feature_config.clip_aggregation
        if self.reads & {"frame", "clip"}:
            self._check_backbone()
        self._frame_backbone: Backbone | None = None
        self._clip_backbone: ClipBackbone | None = None

    @classmethod
    def from_manifest(
        cls,
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        weights: str | None = None,
        vote: str = "manifest",
        vote_k: int | None = None,
    ) -> ModelRuntime:
        """The runtime of the model in ``model_dir`` (default: the shipped model) on ``device`` ("auto":
        a GPU when torch sees one). ``weights`` overrides the backbone's weights file (``model.weights``);
        ``vote``/``vote_k`` override the manifest's voting rule (``serve.ensemble.vote``). Raises
        :class:`ModelError` when the manifest is invalid or its inputs cannot be computed as trained."""
        dev = resolve_device(device)
        model = EnsembleModel(model_dir or DEFAULT_MODEL_DIR, device=dev, vote=vote, vote_k=vote_k)
        return cls(model, device=dev, weights=weights)

    # --- what the model reads and what was built ----------------------------------------------------

    def _check_backbone(self) -> None:
        """The manifest's backbone is registered here as the kind its record says, with the feature size
        the members were trained on and (frame backbones) the same preprocessing; checked without building."""
        from nexara.backbones import backbone_kind, get_feature_dim, get_spec

        man, fc = self.manifest, self.feature_config
        kind = backbone_kind(man.backbone)
        if kind == "clip" and fc.clip is None:
            raise ModelError(
                f"model {man.version}: {man.backbone} is a clip backbone but the manifest records no clip spec"
            )
        if kind == "frame" and fc.clip is not None:
            raise ModelError(f"model {man.version}: records a clip spec but {man.backbone} is a frame backbone")
        dim = get_feature_dim(man.backbone)
        if dim != man.feature_dim:
            raise ModelError(
                f"model {man.version} was trained on {man.feature_dim}-d features, backbone {man.backbone} gives {dim}"
            )
        if fc.clip is not None:
            fc.check_clip_spec(man.backbone, fc.clip)
        else:
            fc.check_backbone(man.backbone, get_spec(man.backbone))

    @property
    def reads_frames(self) -> bool:
        return "frame" in self.reads

    @property
    def reads_windows(self) -> bool:
        return "clip" in self.reads

    @property
    def reads_motion(self) -> bool:
        return "motion" in self.reads

    @property
    def built(self) -> tuple[str, ...]:
        """The backbones built so far: ``"frame_backbone"``, ``"clip_backbone"`` (a motion-only model: none)."""
        pairs = (("frame_backbone", self._frame_backbone), ("clip_backbone", self._clip_backbone))
        return tuple(name for name, b in pairs if b is not None)

    @property
    def frame_size_hw(self) -> tuple[int, int]:
        """Frame size :meth:`embed_frames` takes (the manifest's preprocessing size)."""
        return self.feature_config.size_hw

    @property
    def motion_spec(self) -> MotionSpec | None:
        return self.feature_config.motion

    @property
    def frame_backbone(self) -> Backbone:
        """The frame CNN, built on first use; ModelError when no member reads frame features."""
        if self._frame_backbone is None:
            if not self.reads_frames:
                raise ModelError(f"model {self.manifest.version} reads no frame backbone features")
            from nexara.backbones import create_backbone

            self._frame_backbone = create_backbone(self.manifest.backbone, weights=self.weights, device=self.device)
        return self._frame_backbone

    @property
    def clip_backbone(self) -> ClipBackbone:
        """The clip backbone with the manifest's clip spec, built on first use; ModelError when not read."""
        if self._clip_backbone is None:
            if not self.reads_windows or self.feature_config.clip is None:
                raise ModelError(f"model {self.manifest.version} reads no clip backbone features")
            from nexara.backbones import create_clip_backbone

            self._clip_backbone = create_clip_backbone(
                self.manifest.backbone, spec=self.feature_config.clip, weights=self.weights, device=self.device
            )
        return self._clip_backbone

    # --- embed ------------------------------------------------------------------------------------

    def check_frames(self, frames: Any) -> np.ndarray:
        """``frames`` as the uint8 ``(n, H, W, 3)`` array :meth:`embed_frames` takes (H, W: :attr:`frame_size_hw`)."""
        arr = np.asarray(frames)
        h, w = self.frame_size_hw
        if arr.ndim != 4 or arr.dtype != np.uint8 or tuple(arr.shape[1:]) != (h, w, 3):
            raise InvalidInputError(f"expected (n, {h}, {w}, 3) uint8 frames, got {arr.dtype} {arr.shape}")
        return arr

    def check_windows(self, windows: Any) -> np.ndarray:
        """``windows`` as the uint8 ``(n, T, H, W, 3)`` array :meth:`embed_windows` takes (T: the clip spec's)."""
        spec = self.feature_config.clip
        if not self.reads_windows or spec is None:
            raise ModelError(f"model {self.manifest.version} reads no clip backbone features")
        arr = np.asarray(windows)
        if arr.ndim != 5 or arr.dtype != np.uint8 or arr.shape[1] != spec.num_frames or arr.shape[4] != 3:
            raise InvalidInputError(
                f"expected (n, {spec.num_frames}, H, W, 3) uint8 windows ({spec.describe()}), "
                f"got {arr.dtype} {arr.shape}"
            )
        return arr

    def embed_frames(self, frames: Any) -> np.ndarray:
        """uint8 frames ``(n, H, W, 3)`` at :attr:`frame_size_hw` -> ``(n, D)`` float32 features. A model
        none of whose members reads frame features gets ``(n, 0)`` and builds nothing."""
        arr = self.check_frames(frames)
        if not self.reads_frames:
            return np.zeros((len(arr), 0), dtype=np.float32)
        if len(arr) == 0:
            return np.zeros((0, self.manifest.feature_dim), dtype=np.float32)
        import torch

        backbone = self.frame_backbone
        with torch.inference_mode():
            return backbone(arr).float().cpu().numpy()

    def embed_windows(self, windows: Any) -> WindowFeatures:
        """uint8 windows ``(n, T, H, W, 3)`` (T = the clip spec's frames) -> pooled and per-time features."""
        arr = self.check_windows(windows)
        import torch

        backbone = self.clip_backbone
        with torch.inference_mode():
            out = backbone(arr)
        return WindowFeatures(out.pooled.float().cpu().numpy(), out.per_time.float().cpu().numpy())

    # --- decode -----------------------------------------------------------------------------------

    def decode(
        self, source: Source, *, timeout_s: float = 10.0, max_decode_mb: float = DEFAULT_MAX_DECODE_MB
    ) -> DecodedClip:
        """A finite video (path, URL or bytes) decoded for this model (:meth:`ClipDecoder.decode`)."""
        return self.decoder.decode(source, timeout_s=timeout_s, max_decode_mb=max_decode_mb)

    # --- embed + score ----------------------------------------------------------------------------

    def embed(self, decoded: DecodedClip) -> ModelInputs:
        """The members' inputs of a decoded clip, one row per window (or one for the whole clip)."""
        appearance = None
        if decoded.windows is not None:
            appearance = self.embed_windows(decoded.windows).per_time
        elif decoded.frames is not None:
            appearance = self.embed_frames(decoded.frames)[None]
        return ModelInputs(appearance, decoded.motion)

    def check_inputs(self, appearance: Any = None, motion: Any = None) -> ModelInputs:
        """Precomputed inputs validated as :meth:`score` takes them (:func:`check_inputs`)."""
        return check_inputs(self.model, appearance, motion)

    def score(self, appearance: Any = None, motion: Any = None) -> Scores:
        """Scores of N items from precomputed inputs (only those the members read are needed)."""
        return score_members(self.model, appearance, motion)

    def aggregate(self, windows: Scores) -> Scores:
        """One clip row from its windows' rows: the most violent window's (``max``: its probability, decision,
        tier and members) or the mean probability and member probabilities (``mean``, decided and tiered at
        the manifest threshold)."""
        if len(windows) == 0:
            raise InvalidInputError("no window scores to aggregate")
        if self.aggregation == "max" or len(windows) == 1:
            i = int(np.argmax(windows.probability))
            return replace(
                windows,
                probability=windows.probability[i : i + 1],
                violent=windows.violent[i : i + 1],
                confidence=windows.confidence[i : i + 1],
                member_probs=windows.member_probs[i : i + 1],
            )
        from nexara.metrics import confidence_tier

        p = np.asarray([windows.probability.mean()])
        tiers = np.atleast_1d(confidence_tier(p, windows.threshold, self.manifest.tiers))
        return replace(
            windows,
            probability=p,
            violent=p >= windows.threshold,
            confidence=tuple(str(t) for t in tiers),
            member_probs=windows.member_probs.mean(axis=0, keepdims=True),
        )

    def predict(
        self, source: Source, *, timeout_s: float = 10.0, max_decode_mb: float = DEFAULT_MAX_DECODE_MB
    ) -> ClipScore:
        """Decode, embed, score and aggregate one finite video in this process."""
        decoded = self.decode(source, timeout_s=timeout_s, max_decode_mb=max_decode_mb)
        inputs = self.embed(decoded)
        windows = self.score(inputs.appearance, inputs.motion)
        return ClipScore(
            self.aggregate(windows), windows, decoded.start_s, decoded.end_s, decoded.frames_used, decoded.duration_s
        )
