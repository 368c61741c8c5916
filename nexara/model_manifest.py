"""The model manifest: the only way trained artifacts reach serving.

A manifest folder holds ``manifest.json`` plus one ``<member>.pt`` state_dict per ensemble member. The
JSON names the members (head config, weights file and its sha256), the voting rule and weights, the
calibration temperature, the decision threshold, confidence tiers, the backbone id with its
preprocessing spec and hash, T, a training-data summary and the cross-validation metrics. A model on a
clip backbone also records its clip spec (``clip``: T frames evenly over a window of ``window_s``, short
side, centre crop, value range, and their hash): the live path must cut windows exactly so. Such a model
was trained on windows (``window_hop_s`` apart in each training clip); its appearance members read the
clip backbone's per-time features ``(N, T', D)`` of a window, and a clip's score is the
``clip_aggregation`` (``max``: a clip is violent when any window is) of its windows' probabilities.

:func:`feature_config` turns a manifest into the one record every inference path (``nexara predict``,
batch predict on Ray Data, the Serve app, the stream actors) computes a clip's features from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nexara.config.base import CONFIDENCE_TIERS
from nexara.config.offline import ResizePolicy
from nexara.errors import ModelError

if TYPE_CHECKING:  # both import heavier modules (cv2, torch) than reading a manifest needs
    from nexara.backbones.spec import ClipSpec, PreprocessSpec
    from nexara.motion import MotionSpec

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberEntry(_Model):
    name: str
    head_config: dict[str, Any] = Field(description="create_head(**head_config) rebuilds the module.")
    weights_file: str = Field(description="state_dict file, relative to the manifest folder.")
    sha256: str
    input: Literal["appearance", "motion"] = "appearance"
    best_epoch: int | None = None


class BackboneWeightsEntry(_Model):
    """The backbone's own weights when they are not the registry's stock ones (a fine-tuned backbone)."""

    file: str = Field(description="state_dict file, relative to the manifest folder.")
    sha256: str


class MotionEntry(_Model):
    version: str
    hash: str
    dim: int = Field(ge=1)


class PreprocessingEntry(_Model):
    size_hw: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: ResizePolicy
    channels: str = "rgb"
    hash: str


class ClipPreprocessingEntry(_Model):
    """A :class:`~nexara.backbones.spec.ClipSpec` as recorded in a manifest, with its hash."""

    num_frames: int = Field(ge=1)
    window_s: float = Field(gt=0)
    sampling: Literal["evenly"]
    short_side_px: int = Field(ge=1)
    crop_px: int = Field(ge=1)
    crop: Literal["center_crop"]
    value_range: tuple[float, float]
    channels: Literal["rgb"] = "rgb"
    motion_crop: float = Field(0.0, ge=0, le=1)
    decode_short_side_px: int | None = Field(None, ge=1)
    hash: str

    @classmethod
    def from_spec(cls, spec: ClipSpec) -> ClipPreprocessingEntry:
        return cls(**spec.to_dict(), hash=spec.hash())


class ModelManifest(_Model):
    format_version: int = FORMAT_VERSION
    version: str = Field(description="Model version string shown in verdicts and /v1/model.")
    created_utc: str
    backbone: str
    preprocessing: PreprocessingEntry
    frames_per_clip: int = Field(ge=1)
    feature_dim: int = Field(ge=1)
    motion: MotionEntry | None = Field(None, description="Motion statistics spec, when a member reads them.")
    clip: ClipPreprocessingEntry | None = Field(
        None, description="Clip spec (T, window, crop) when `backbone` is a clip backbone; None for frame backbones."
    )
    window_hop_s: float | None = Field(
        None, gt=0, description="Clip backbones: hop between the training windows of a clip, seconds."
    )
    clip_aggregation: Literal["max", "mean"] | None = Field(
        None, description="Clip backbones: how a clip's score is made of its windows' probabilities."
    )
    backbone_weights: BackboneWeightsEntry | None = Field(
        None,
        description="The backbone's weights file when the features were made with `model.weights` (e.g. a "
        "fine-tuned backbone); None: the registry's stock weights.",
    )
    members: list[MemberEntry] = Field(min_length=1)
    vote: Literal["soft", "majority", "k_of_n"] = "soft"
    vote_k: int | None = None
    weights: list[float]
    temperature: float = Field(gt=0)
    threshold: float = Field(gt=0, lt=1)
    tiers: dict[str, float] = Field(default_factory=lambda: dict(CONFIDENCE_TIERS))
    training_data: dict[str, Any] = Field(default_factory=dict)
    cv_metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        if abs(sum(self.weights) - 1) > 1e-4 or min(self.weights) < 0:
            raise ValueError("weights must be non-negative and sum to 1")
        if len({m.name for m in self.members}) != len(self.members):
            raise ValueError("member names must be unique")
        if any(m.input == "motion" for m in self.members) and self.motion is None:
            raise ValueError("a member reads the motion input but the manifest has no motion entry")
        if self.vote == "k_of_n" and not (self.vote_k and 1 <= self.vote_k <= len(self.members)):
            raise ValueError("vote k_of_n needs 1 <= vote_k <= number of members")
        if self.clip is None and (self.window_hop_s is not None or self.clip_aggregation is not None):
            raise ValueError("window_hop_s and clip_aggregation belong to a model on a clip backbone (no clip spec)")
        if self.clip is not None and self.clip.num_frames != self.frames_per_clip:
            raise ValueError(
                f"frames_per_clip {self.frames_per_clip} differs from the clip spec's {self.clip.num_frames}"
            )
        return self


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path, *, verify: bool = True) -> ModelManifest:
    """Load and validate ``folder/manifest.json``; with ``verify`` check every member file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise ModelError(f"model manifest not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = ModelManifest.model_validate(data)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ModelError(f"{path}: invalid model manifest: {problems}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise ModelError(f"{path}: manifest format {manifest.format_version}, this build reads {FORMAT_VERSION}")
    if verify:
        for m in manifest.members:
            wf = path.parent / m.weights_file
            if not wf.is_file():
                raise ModelError(f"{path}: member {m.name}: weights file missing: {wf}")
            if sha256_file(wf) != m.sha256:
                raise ModelError(f"{path}: member {m.name}: {wf.name} does not match its sha256 in the manifest")
        bw = manifest.backbone_weights
        if bw is not None:
            wf = path.parent / bw.file
            if not wf.is_file():
                raise ModelError(f"{path}: backbone weights file missing: {wf}")
            if sha256_file(wf) != bw.sha256:
                raise ModelError(f"{path}: backbone weights {wf.name} do not match their sha256 in the manifest")
    return manifest


def write_manifest(manifest: ModelManifest, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / MANIFEST_FILE
    tmp = folder / ("." + MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How the inputs of a model are computed, as it was trained: ``frames_per_clip`` frames sampled
    from a clip, resized to ``size_hw`` under ``resize`` and embedded by ``backbone`` (whose
    preprocessing hashes to ``preprocessing_hash``); plus the motion statistics when a member reads
    them (``motion`` is then this build's spec, already checked against the manifest's)."""

    model_version: str
    backbone: str
    frames_per_clip: int
    size_hw: tuple[int, int]
    resize: ResizePolicy
    preprocessing_hash: str
    motion: MotionSpec | None
    clip: ClipSpec | None = None  # the clip spec, for a model on a clip backbone (already checked against its hash)
    clip_aggregation: Literal["max", "mean"] = "max"  # a clip's score from its windows' (clip backbones)

    @property
    def needs_motion(self) -> bool:
        return self.motion is not None

    def check_clip_spec(self, name: str, spec: ClipSpec) -> None:
        """Fail at start-up when windows would be cut or embedded otherwise than the model was trained on
        (another clip backbone, or another T, window length, crop or value range), naming both recipes."""
        if self.clip is None:
            raise ModelError(
                f"model {self.model_version} reads frame features from {self.backbone}, "
                f"not windows of clip backbone {name}"
            )
        if name != self.backbone or spec.hash() != self.clip.hash():
            raise ModelError(
                f"model {self.model_version} expects clip backbone {self.backbone} with clip spec {self.clip.hash()} "
                f"({self.clip.describe()}), got {name} with {spec.hash()} ({spec.describe()})"
            )

    def check_backbone(self, name: str, spec: PreprocessSpec) -> None:
        """Fail at start-up when frames would be embedded by another backbone, or with other
        preprocessing (the backbone's spec under the model's resize policy), than the model's."""
        got = replace(spec, resize=self.resize).hash()
        if name != self.backbone or got != self.preprocessing_hash:
            raise ModelError(
                f"model {self.model_version} expects backbone {self.backbone} with preprocessing "
                f"{self.preprocessing_hash}, got {name} with {got}"
            )


def feature_config(manifest: ModelManifest) -> FeatureConfig:
    """The :class:`FeatureConfig` of ``manifest``. Raises :class:`ModelError` when a member reads motion
    statistics that this build computes differently (another spec hash), or when the recorded clip spec
    does not hash, in this build, to the hash recorded with it."""
    motion = None
    if any(m.input == "motion" for m in manifest.members):
        from nexara.motion import MOTION_VERSION, MotionSpec

        motion = MotionSpec()
        if manifest.motion is None or manifest.motion.hash != motion.hash():
            raise ModelError(
                f"model {manifest.version} was trained on motion statistics "
                f"{manifest.motion.hash if manifest.motion else None}, this build computes {MOTION_VERSION} "
                f"({motion.hash()})"
            )
    clip = None
    if manifest.clip is not None:
        from nexara.backbones.spec import ClipSpec

        recorded = manifest.clip.model_dump(exclude={"hash"})
        clip = ClipSpec.from_dict(recorded)
        if clip.hash() != manifest.clip.hash:
            raise ModelError(
                f"model {manifest.version} records clip spec hash {manifest.clip.hash}, but its fields hash to "
                f"{clip.hash()} in this build ({clip.describe()})"
            )
    pre = manifest.preprocessing
    return FeatureConfig(
        model_version=manifest.version,
        backbone=manifest.backbone,
        frames_per_clip=manifest.frames_per_clip,
        size_hw=(int(pre.size_hw[0]), int(pre.size_hw[1])),
        resize=pre.resize,
        preprocessing_hash=pre.hash,
        motion=motion,
        clip=clip,
        clip_aggregation=manifest.clip_aggregation or "max",
    )
