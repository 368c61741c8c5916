"""The one runtime configuration: ``ray_config.yaml`` validated by a pydantic schema.

Every model forbids unknown keys and documents each field with its bounds. Errors name the key path and
the line in the YAML file. ``${ENV}`` substitution is allowed only in fields marked as secrets or URLs.

The schema is the only truth: every cross-field rule that runtime code would otherwise check is a
validator here, so ``nexara config validate`` refuses what a stream actor would refuse. Live code never
receives this whole tree: :meth:`NexaraConfig.resolve_camera` builds one frozen :class:`ResolvedCamera`
per source (the global ``windows`` and ``confirmation`` sections merged with the camera's overrides and
validated again).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nexara.errors import ConfigError
from nexara.training_config import MemberConfig, TrainConfig

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "ray_config.yaml"
ENV_VAR = "NEXARA_CONFIG"

ResizePolicy = Literal["squash", "letterbox", "center_crop"]


#: Confidence tiers of a clip verdict: P(decided class) >= value; LOW below every tier.
CONFIDENCE_TIERS: Mapping[str, float] = MappingProxyType({"HIGH": 0.85, "MEDIUM": 0.65})
#: Alert tiers by peak probability: the highest threshold at or below the peak wins.
ALERT_TIERS: Mapping[str, float] = MappingProxyType({**CONFIDENCE_TIERS, "LOW": 0.0})


class RuleError(ValueError):
    """A cross-field rule broken at ``key`` (a dotted path relative to the model that raised it), so the
    error names that key and its line rather than the whole section."""

    def __init__(self, key: str | tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key: tuple[str | int, ...] = tuple(key.split(".")) if isinstance(key, str) else key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Frozen(BaseModel):
    """Sections handed to the live path as they are: shared by threads and actors, so never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_tiers(tiers: Mapping[str, float]) -> None:
    if not tiers:
        raise RuleError("tiers", "tiers must name at least one tier")
    for name, value in tiers.items():
        if not name:
            raise RuleError("tiers", "tier names must be non-empty")
        if not 0.0 <= value <= 1.0:
            raise RuleError(("tiers", name), f"tiers: {name} must be a probability in [0, 1], got {value!r}")


class MediaConfig(_Model):
    """How videos are decoded and sampled."""

    frames_per_clip: int = Field(16, ge=1, le=512, description="T: frames sampled evenly over a clip (1..512).")
    resize: ResizePolicy = Field(
        "squash", description="How frames reach the model input size: squash, letterbox or center_crop."
    )
    long_video_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Clips longer than this (seconds) are sampled at `analysis_fps` instead of T even frames.",
    )
    analysis_fps: float = Field(
        4.0, gt=0, le=120, description="Fixed sampling rate (frames/s) for long videos and live streams."
    )
    max_frames_long_video: int = Field(
        256, ge=1, le=100_000, description="Upper bound on frames kept from one long video at `analysis_fps`."
    )
    read_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Seconds before an open or a network read gives up (never hang)."
    )


class ModelConfig(_Model):
    """Which frame backbone turns frames into features."""

    backbone: str = Field("efficientnet_lite0", description="Registered backbone name (`nexara backbones`).")
    weights: str | None = Field(
        None, description="Path to a backbone state_dict; default: shipped/offline weights or the hub cache."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when the worker has a GPU, else CPU."
    )


class SplitConfig(_Model):
    """Stratified, source-grouped split written into the dataset manifest."""

    train: float = Field(0.7, ge=0, le=1, description="Fraction of sources for training (0..1).")
    val: float = Field(0.15, ge=0, le=1, description="Fraction of sources for validation (0..1).")
    test: float = Field(0.15, ge=0, le=1, description="Fraction of sources for test (0..1).")
    folds: int | None = Field(
        None, ge=2, le=50, description="If set, write k grouped folds (split = 'fold0'..) instead of fractions."
    )
    seed: int = Field(0, ge=0, description="Seed of the split.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        if self.folds is None and abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {self.train + self.val + self.test:g}")
        return self


class DatasetConfig(_Model):
    """How a folder of videos becomes a manifest."""

    label_map: dict[str, int] = Field(
        default_factory=lambda: {
            "fight": 1,
            "fights": 1,
            "violence": 1,
            "violent": 1,
            "nofight": 0,
            "nofights": 0,
            "nonviolence": 0,
            "non-violence": 0,
            "non_violence": 0,
            "normal": 0,
        },
        description="Class sub-folder name (case-insensitive) -> label (1 violent, 0 not).",
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ts"],
        description="File extensions treated as videos when scanning folders.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _labels_binary(self) -> DatasetConfig:
        bad = {k: v for k, v in self.label_map.items() if v not in (0, 1)}
        if bad:
            raise ValueError(f"label_map values must be 0 or 1, got {bad}")
        return self


class FeaturesConfig(_Model):
    """Ray Data feature extraction."""

    batch_size: int = Field(16, ge=1, le=4096, description="Frames per backbone batch.")
    decode_num_cpus: float = Field(
        0.5, gt=0, le=64, description="CPUs per decode task (must differ from model_num_cpus: Ray fuses equal ones)."
    )
    model_num_cpus: float = Field(0.75, gt=0, le=64, description="CPUs per backbone actor.")
    model_num_gpus: float = Field(0.0, ge=0, le=8, description="GPUs per backbone actor (0 = CPU; 1 on a GPU cluster).")
    model_actors: int = Field(1, ge=1, le=1024, description="Backbone actor pool size.")
    torch_threads: int = Field(1, ge=1, le=256, description="torch.set_num_threads inside each actor.")
    clips_per_block: int = Field(4, ge=1, le=10_000, description="Clips per Ray Data block (parallelism).")
    motion: bool = Field(
        True,
        description="Also store the clip's optical-flow motion statistics (nexara.motion) beside the CNN features.",
    )

    @model_validator(mode="after")
    def _no_fusion(self) -> FeaturesConfig:
        if self.decode_num_cpus == self.model_num_cpus:
            raise ValueError(
                "decode_num_cpus and model_num_cpus must differ: Ray Data fuses stages with equal CPU shares"
            )
        return self


class RayConfig(_Model):
    """How the local runtime starts Ray (ignored when attaching to a cluster)."""

    address: str = Field(
        "local",
        description="'local' starts a private instance; 'auto' or ray://host:port attaches to a cluster.",
    )
    num_cpus: int | None = Field(None, ge=1, le=4096, description="CPUs of a local instance (default: all).")
    object_store_memory_mb: int = Field(
        512, ge=64, le=1_048_576, description="Object store size of a local instance, MiB."
    )
    include_dashboard: bool = Field(False, description="Start the Ray dashboard with a local instance.")


def _default_members() -> list[MemberConfig]:
    """Three views of the clip's optical-flow statistics: a linear probe, an MLP probe and extremely
    randomised trees. Appearance heads (Lite0 frame features) are registered but not in the default:
    on the shared CCTV clips they lowered the ensemble's AUC (README, the default model)."""
    return [
        MemberConfig(name="motion_lr", head="probe", input="motion", head_kwargs={"hidden": 0, "dropout": 0.2}),
        MemberConfig(name="motion_mlp", head="probe", input="motion", head_kwargs={"hidden": 64, "dropout": 0.5}),
        MemberConfig(name="motion_trees", head="forest", input="motion"),
    ]


class TrainingSection(_Model):
    """Ensemble training, evaluation and export (`nexara train`, `nexara evaluate`)."""

    members: list[MemberConfig] = Field(
        default_factory=_default_members, min_length=1, description="Ensemble members (head + arguments)."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation settings.")  # type: ignore[arg-type]
    cv_folds: int = Field(5, ge=2, le=50, description="K of the grouped cross-validation (2..50).")
    inner_folds: int = Field(
        4,
        ge=0,
        le=20,
        description="Inner grouped K-fold inside each CV fold: its out-of-fold predictions on the fold's training "
        "clips fit the ensemble weights, temperature and threshold, then members are refit on all of them "
        "(as the shipped model is on all clips). 0 or 1 = one inner split of inner_val_frac (faster, noisier).",
    )
    inner_val_frac: float = Field(
        0.2,
        gt=0,
        lt=0.5,
        description="With inner_folds 0/1: share of a fold's training sources held out for early stopping/calibration.",
    )
    weight_shrinkage: float = Field(
        0.1, ge=0, le=1, description="Ensemble weights are shrunk this much toward uniform (0..1)."
    )
    threshold_mode: Literal["max_f1", "fpr"] = Field(
        "max_f1", description="Decision threshold: best F1 on validation, or the best recall at target_fpr."
    )
    target_fpr: float = Field(0.05, gt=0, lt=1, description="False-positive-rate budget for threshold_mode fpr.")
    tiers: dict[str, float] = Field(
        default_factory=lambda: dict(CONFIDENCE_TIERS),
        description="Confidence tiers: P(decided class) >= value; LOW below every tier.",
    )
    storage_path: str = Field(
        "runs/ray_results", description="Ray Train checkpoints and results: a local folder or a cloud URI."
    )
    member_num_cpus: float = Field(1.0, gt=0, le=64, description="CPUs per member fit (Ray task / Train worker).")
    torch_threads: int = Field(1, ge=1, le=256, description="torch threads per member fit.")
    use_gpu: bool = Field(False, description="Train members on GPU workers (one GPU each).")
    seed: int = Field(0, ge=0, description="Seed of the CV folds and inner splits.")

    @model_validator(mode="after")
    def _check(self) -> TrainingSection:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        if any(not 0 < v <= 1 for v in self.tiers.values()):
            raise ValueError("tier values must be in (0, 1]")
        return self


# --- live detection ------------------------------------------------------------------------------

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class GridConfig(_Frozen):
    """How one source is split into cells (a monitor wall). 1x1 = a plain camera."""

    mode: Literal["fixed", "auto"] = Field(
        "fixed", description="fixed: rows x cols with margins; auto: detect the cell boxes from the first frames."
    )
    rows: int = Field(1, ge=1, le=16, description="Grid rows (mode fixed).")
    cols: int = Field(1, ge=1, le=16, description="Grid columns (mode fixed).")
    margin_px: int = Field(0, ge=0, le=200, description="Pixels trimmed inside every cell border (separator lines).")
    boxes: list[tuple[int, int, int, int]] | None = Field(
        None,
        description="Explicit cell boxes (x, y, w, h) in wall pixels, row-major; written by `nexara grid detect --write`.",  # noqa: E501
    )
    cell_ids: list[str] | None = Field(
        None, description="Camera id of each cell, row-major (default: <source id>-r<row>c<col>)."
    )
    no_signal_check_s: float = Field(
        2.0, gt=0, le=3600, description="A cell black or frozen this long is reported as no signal and not scored."
    )

    @property
    def cell_count(self) -> int | None:
        """Cells this grid makes; None while they are detected from the frames (mode auto)."""
        if self.boxes:
            return len(self.boxes)
        return None if self.mode == "auto" else self.rows * self.cols

    @model_validator(mode="after")
    def _check(self) -> GridConfig:
        for i, (x, y, w, h) in enumerate(self.boxes or ()):
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise RuleError(("boxes", i), f"box {i} ({x}, {y}, {w}, {h}) needs x, y >= 0 and w, h >= 1")
        if self.cell_ids is not None:
            for i, cid in enumerate(self.cell_ids):
                if not re.match(_ID_RE, cid):
                    raise RuleError(("cell_ids", i), f"cell id {cid!r}: letters, digits, '_', '.', '-'")
            count = self.cell_count
            if count is not None and len(self.cell_ids) != count:
                raise RuleError("cell_ids", f"{len(self.cell_ids)} cell ids for {count} cells")
        return self


class SourceSettings(_Frozen):
    """Where a source's video comes from and how to keep reading it (the reader's part of a camera)."""

    url: str = Field(min_length=1, description="File path, any URL PyAV opens (rtsp/http/hls), or a capture device.")
    pacing: Literal["realtime", "fast"] = Field(
        "realtime", description="Files: realtime paces frames at their timestamps; fast reads as fast as possible."
    )
    loop: bool = Field(False, description="Files: start again at the end (stream time keeps increasing).")
    format: str | None = Field(None, description="Input format for devices, e.g. x11grab for a screen capture.")
    options: dict[str, str] = Field(default_factory=dict, description="ffmpeg/PyAV input options.")
    reconnect: bool | None = Field(
        None, description="Reconnect after a drop, a read timeout or the end of a URL (default: URLs yes, files no)."
    )
    max_reconnects: int | None = Field(
        None, ge=0, le=1_000_000, description="Give up after this many (default: never)."
    )
    backoff_initial_s: float = Field(
        0.5, gt=0, le=3600, description="First reconnect delay; doubles up to backoff_max_s."
    )
    backoff_max_s: float = Field(30.0, gt=0, le=86_400, description="Longest reconnect delay (full jitter below it).")

    @model_validator(mode="after")
    def _check_source(self) -> SourceSettings:
        if not self.url.strip():
            raise RuleError("url", "url must be a path, a URL or a device, not blank")
        if self.format is not None and not self.format.strip():
            raise RuleError("format", "format must be an FFmpeg input format name (e.g. 'x11grab') or unset")
        if self.loop:
            from nexara.media import source_label, url_scheme  # only when looping: keeps validation light

            if self.format is not None or url_scheme(self.url) is not None:
                raise RuleError(
                    "loop", f"loop needs a local file, not {source_label(self.url)!r} (URLs reconnect instead)"
                )
        if self.backoff_max_s < self.backoff_initial_s:
            raise RuleError(
                "backoff_max_s",
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s ({self.backoff_initial_s})",
            )
        return self


class WindowsConfig(_Frozen):
    """How live streams are cut into scored windows."""

    window_s: float = Field(
        2.0, gt=0.2, le=60, description="Window length, seconds (the training clips are ~2 s long)."
    )
    stride_s: float = Field(1.0, gt=0, le=60, description="Hop between windows while quiet, seconds.")
    alert_stride_s: float = Field(
        0.5, gt=0, le=60, description="Hop while a cell's score is above pre_alert (adaptive sampling)."
    )
    pre_alert: float = Field(0.25, ge=0, le=1, description="Score above which a cell is sampled at alert_stride_s.")
    max_in_flight: int = Field(2, ge=1, le=64, description="Windows of one source being scored at once.")
    max_queued: int = Field(
        4, ge=1, le=1024, description="Windows waiting per source; when full the OLDEST is dropped and counted."
    )
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Seconds before a scoring request is retried.")
    max_attempts: int = Field(
        6, ge=1, le=100, description="Attempts per window, with backoff (a replica that dies is retried)."
    )
    cut_guard: bool = Field(
        True,
        description="Detect cuts (scene changes, loop seams, DVR camera switches) and restart the motion "
        "statistics after them: flow across a cut looks like violent motion.",
    )
    cut_min_diff: float = Field(12.0, gt=0, le=255, description="Mean gray difference a cut must exceed.")
    cut_ratio: float = Field(4.0, gt=1, le=100, description="...and this multiple of the recent median difference.")

    @model_validator(mode="after")
    def _check(self) -> WindowsConfig:
        if self.alert_stride_s > self.stride_s:
            raise RuleError(
                "alert_stride_s", f"alert_stride_s ({self.alert_stride_s}) must be <= stride_s ({self.stride_s})"
            )
        return self


class ConfirmationSection(_Frozen):
    """Temporal confirmation per cell (k of n windows to start, hysteresis to end)."""

    enter_threshold: float = Field(0.6, ge=0, le=1, description="Window probability counting toward a start.")
    exit_threshold: float = Field(0.4, ge=0, le=1, description="Below this for exit_windows windows ends an alert.")
    k: int = Field(2, ge=1, le=100, description="Windows at or above enter_threshold among the last n to start.")
    n: int = Field(3, ge=1, le=100, description="Window history length for the k-of-n rule.")
    exit_windows: int = Field(3, ge=1, le=100, description="Consecutive quiet windows that end an alert.")
    cooldown_s: float = Field(10.0, ge=0, le=86_400, description="No new alert on a cell this long after one ends.")
    max_event_s: float = Field(300.0, gt=0, le=86_400, description="An alert longer than this is ended.")
    update_every_s: float = Field(5.0, ge=0, le=86_400, description="Seconds between update events of an alert.")
    tiers: dict[str, float] = Field(
        default_factory=lambda: dict(ALERT_TIERS),
        description="Alert tier by peak probability: the highest threshold at or below the peak wins.",
    )

    @model_validator(mode="after")
    def _check(self) -> ConfirmationSection:
        if not self.exit_threshold < self.enter_threshold:
            raise RuleError(
                "exit_threshold",
                f"exit_threshold ({self.exit_threshold}) must be < enter_threshold ({self.enter_threshold})",
            )
        if self.k > self.n:
            raise RuleError("k", f"k ({self.k}) must be <= n ({self.n})")
        _check_tiers(self.tiers)
        return self

    def tier_for(self, peak_probability: float) -> str:
        """The tier of an alert peaking at ``peak_probability`` (below every threshold: the lowest tier)."""
        ranked = sorted(self.tiers.items(), key=lambda item: item[1], reverse=True)
        for name, threshold in ranked:
            if peak_probability >= threshold:
                return name
        return ranked[-1][0]


class CameraConfig(SourceSettings):
    """One source: a camera URL, a file, or a screen recording of a monitor wall. ``windows`` and
    ``confirmation`` override keys of the global sections for this source (and its cells) only."""

    id: str = Field(pattern=_ID_RE, description="Camera (or wall) id: letters, digits, '_', '.', '-'.")
    grid: GridConfig = Field(default_factory=GridConfig)  # type: ignore[arg-type]
    windows: dict[str, Any] = Field(
        default_factory=dict, description="Keys of the global `windows` section overridden for this camera."
    )
    confirmation: dict[str, Any] = Field(
        default_factory=dict, description="Keys of the global `confirmation` section overridden for this camera."
    )


def _override(section: BaseModel, override: Mapping[str, Any], key: tuple[str | int, ...]) -> Any:
    """``section`` with ``override`` applied, validated as a whole (cross-field rules included)."""
    if not override:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **override})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RuleError((*key, *_error_loc(err)), _error_msg(err)) from None


@dataclass(frozen=True, slots=True)
class ResolvedCamera:
    """Everything one source's live path reads, resolved from the schema: the camera, its effective
    ``windows`` and ``confirmation`` (global merged with the camera's overrides), and the global settings
    it needs. Built by :meth:`NexaraConfig.resolve_camera`; frozen, picklable, no dicts of the config."""

    camera: CameraConfig
    windows: WindowsConfig
    confirmation: ConfirmationSection
    read_timeout_s: float
    sinks: SinksSection
    model_dir: str | None

    @property
    def id(self) -> str:
        return self.camera.id

    @property
    def evidence_lag_s(self) -> float:
        """How far back evidence packets are kept: the reader runs ahead of the verdicts by up to the
        queued + in-flight windows, and an alert is confirmed up to n windows after its start."""
        w = self.windows
        return w.window_s + (w.max_queued + w.max_in_flight + self.confirmation.n) * w.stride_s + 10.0


class BatchConfig(_Model):
    max_batch_size: int = Field(8, ge=1, le=1024, description="Requests per @serve.batch call.")
    batch_wait_timeout_s: float = Field(0.02, ge=0, le=10, description="Seconds a batch waits to fill.")


class BackboneServeConfig(BatchConfig):
    """The batched backbone deployment (one CNN for every camera)."""

    max_batch_size: int = Field(
        8,
        ge=1,
        le=4096,
        description=(
            "Frames per forward pass (requests are gathered up to it; a larger request is split). "
            "8 is fastest on CPU; raise it (64-256) on a GPU."
        ),
    )
    num_replicas: int = Field(1, ge=1, le=1024)
    num_cpus: float = Field(0.75, gt=0, le=64, description="CPUs per replica (fractional on small machines).")
    num_gpus: float = Field(0.0, ge=0, le=8, description="GPUs per replica (1 on a GPU node).")
    torch_threads: int = Field(1, ge=1, le=256)
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        le=10_000,
        description="Requests a replica holds at once; times the frames per request it bounds how full a batch gets.",
    )


class EnsembleServeConfig(BatchConfig):
    """The voting-ensemble deployment (the manifest's members, weights, calibration, threshold)."""

    num_replicas: int = Field(1, ge=1, le=1024)
    num_cpus: float = Field(0.25, gt=0, le=64)
    max_ongoing_requests: int = Field(64, ge=1, le=10_000)
    vote: Literal["manifest", "soft", "majority", "k_of_n"] = Field(
        "manifest", description="Voting rule; manifest = the one the model was exported with (weighted soft)."
    )
    vote_k: int | None = Field(None, ge=1, le=100, description="k for vote k_of_n.")

    @model_validator(mode="after")
    def _check(self) -> EnsembleServeConfig:
        if self.vote == "k_of_n" and self.vote_k is None:
            raise ValueError("vote k_of_n needs vote_k")
        return self


class ServeSection(_Model):
    """The Ray Serve application (`nexara serve`, `nexara serve build`, `nexara watch`)."""

    app_name: str = Field("nexara", pattern=_ID_RE)
    route_prefix: str = Field("/", pattern=r"^/")
    host: str = Field("127.0.0.1", description="HTTP proxy host (0.0.0.0 to listen on every interface).")
    port: int = Field(8000, ge=0, le=65_535, description="HTTP proxy port.")
    token_env: str = Field(
        "NEXARA_API_TOKEN", description="Environment variable holding the bearer token every route but /healthz needs."
    )
    max_upload_mb: float = Field(200.0, gt=0, le=100_000, description="Largest video accepted by POST /v1/predict.")
    model_dir: str | None = Field(None, description="Model manifest folder (default: the shipped model).")
    ingress_num_cpus: float = Field(0.1, gt=0, le=64)
    stream_num_cpus: float = Field(0.25, gt=0, le=64, description="CPUs reserved per stream actor.")
    camera_start_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Seconds a new camera may take to start before it is refused (503)."
    )
    backbone: BackboneServeConfig = Field(default_factory=BackboneServeConfig)  # type: ignore[arg-type]
    ensemble: EnsembleServeConfig = Field(default_factory=EnsembleServeConfig)  # type: ignore[arg-type]


class WebhookConfig(_Frozen):
    url: str = Field(description="Receiver URL (http/https; ${ENV} allowed).")
    secret_env: str | None = Field(None, description="Environment variable holding the HMAC-SHA256 secret.")
    timeout_s: float = Field(5.0, gt=0, le=600)
    max_attempts: int = Field(6, ge=1, le=100)
    backoff_initial_s: float = Field(0.5, gt=0, le=3600)
    backoff_max_s: float = Field(30.0, gt=0, le=86_400)


class SinksSection(_Frozen):
    """Where alerts go. The event log is always written first (durable), then the others."""

    run_dir: str = Field("runs/live", description="Folder of live runs; each run gets a timestamped subfolder.")
    event_log: str = Field("events.jsonl", description="Event log file name inside the run folder.")
    clips: bool = Field(True, description="Record an evidence clip for each alert (remuxed packets).")
    clip_pre_s: float = Field(5.0, ge=0, le=600, description="Seconds of evidence before the alert start.")
    clip_post_s: float = Field(5.0, ge=0, le=600, description="Seconds of evidence after the alert start.")
    webhook: WebhookConfig | None = None
    console: bool = Field(True, description="Print events in `nexara watch`.")


class NexaraConfig(_Model):
    """Root of ray_config.yaml."""

    media: MediaConfig = Field(default_factory=MediaConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)  # type: ignore[arg-type]
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)  # type: ignore[arg-type]
    ray: RayConfig = Field(default_factory=RayConfig)  # type: ignore[arg-type]
    training: TrainingSection = Field(default_factory=TrainingSection)  # type: ignore[arg-type]
    cameras: list[CameraConfig] = Field(default_factory=list, description="Sources watched by the Serve app.")
    windows: WindowsConfig = Field(default_factory=WindowsConfig)  # type: ignore[arg-type]
    confirmation: ConfirmationSection = Field(default_factory=ConfirmationSection)  # type: ignore[arg-type]
    serve: ServeSection = Field(default_factory=ServeSection)  # type: ignore[arg-type]
    sinks: SinksSection = Field(default_factory=SinksSection)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _check_cameras(self) -> NexaraConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        for i, cam in enumerate(self.cameras):  # a camera's overrides must give valid sections too
            _override(self.windows, cam.windows, ("cameras", i, "windows"))
            _override(self.confirmation, cam.confirmation, ("cameras", i, "confirmation"))
        return self

    def resolve_camera(self, camera: str | CameraConfig) -> ResolvedCamera:
        """What the live path of ``camera`` (one of ``cameras`` by id, or a camera added at run time)
        receives: global sections merged with its overrides, validated again."""
        if isinstance(camera, str):
            found = [c for c in self.cameras if c.id == camera]
            if not found:
                raise ConfigError(f"no camera {camera!r} in the config")
            camera = found[0]
        try:
            windows = _override(self.windows, camera.windows, ("windows",))
            confirmation = _override(self.confirmation, camera.confirmation, ("confirmation",))
        except RuleError as exc:
            raise ConfigError(f"camera {camera.id}: {'.'.join(map(str, exc.key))}: {exc}") from None
        return ResolvedCamera(
            camera=camera,
            windows=windows,
            confirmation=confirmation,
            read_timeout_s=self.media.read_timeout_s,
            sinks=self.sinks,
            model_dir=self.serve.model_dir,
        )


# --- loading -----------------------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise ConfigError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[str(key)] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(obj: Any, path: tuple[str, ...], table: dict[tuple[str, ...], int]) -> Any:
    if isinstance(obj, dict):
        lines = obj.pop("__lines__", {})
        for k, line in lines.items():
            table[(*path, k)] = line
        return {k: _strip_lines(v, (*path, str(k)), table) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_lines(v, (*path, str(i)), table) for i, v in enumerate(obj)]
    return obj


def _error_loc(err: Any) -> tuple[str | int, ...]:
    """The key an error is about: its location, plus the key a :class:`RuleError` names."""
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    return (*loc, *cause.key) if isinstance(cause, RuleError) else loc


def _error_msg(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    cause = (err.get("ctx") or {}).get("error")
    return str(cause) if isinstance(cause, RuleError) else str(err["msg"])


def error_key(err: Any) -> tuple[str, str]:
    """(dotted key, message) of one pydantic error of this schema."""
    return ".".join(str(p) for p in _error_loc(err)), _error_msg(err)


def _line_for(loc: tuple[Any, ...], table: dict[tuple[str, ...], int]) -> int | None:
    parts = tuple(str(p) for p in loc)
    while parts:
        if parts in table:
            return table[parts]
        parts = parts[:-1]
    return None


def parse_config(text: str, *, source: str = "<string>") -> NexaraConfig:
    """Validate YAML text; raise ConfigError naming the key and its line."""
    try:
        raw = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    table: dict[tuple[str, ...], int] = {}
    data = _strip_lines(raw, (), table)
    try:
        return NexaraConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _error_loc(err)
            key = ".".join(str(p) for p in loc) or "<root>"
            line = _line_for(loc, table)
            at = f" (line {line})" if line else ""
            problems.append(f"{key}{at}: {_error_msg(err)}")
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems)) from None


def load_config(path: str | Path | None = None) -> NexaraConfig:
    """Load ``path``, else $NEXARA_CONFIG, else the repository's ray_config.yaml, else defaults."""
    if path is None:
        env = os.environ.get(ENV_VAR)
        path = Path(env) if env else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    if path is None:
        return NexaraConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    return parse_config(p.read_text(encoding="utf-8"), source=str(p))


def expand_env(value: str) -> str:
    """Substitute ${VAR} (for secrets and URLs only); a missing variable is an error naming it."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} is referenced in the config but not set")
        return os.environ[name]

    return _ENV_RE.sub(repl, value)


def dump_config(cfg: NexaraConfig) -> str:
    """The resolved config (defaults filled in) as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
