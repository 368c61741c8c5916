"""Sections of the offline pipeline: media decoding, the backbone, datasets, feature extraction, Ray and
ensemble training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nexara.config.base import CONFIDENCE_TIERS, Model
from nexara.training_config import MemberConfig, TrainConfig

ResizePolicy = Literal["squash", "letterbox", "center_crop"]


class MediaConfig(Model):
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
    max_decode_mb: float = Field(
        2048,
        gt=0,
        le=1_048_576,
        description="MiB of decoded windows one video may take in `nexara predict` and the HTTP predict route "
        "(a clip model holds a video's windows at once); longer videos are refused: use `nexara watch`.",
    )


class ModelConfig(Model):
    """Which backbone (frame or clip) turns frames into features."""

    backbone: str = Field(
        "efficientnet_lite0", description="Registered backbone name, frame or clip kind (`nexara backbones`)."
    )
    weights: str | None = Field(
        None, description="Path to a backbone state_dict; default: shipped/offline weights or the hub cache."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when the worker has a GPU, else CPU."
    )
    frames_per_window: int | None = Field(
        None,
        ge=1,
        le=512,
        description="Clip backbones only: T frames evenly over each window (default: the backbone's profile).",
    )
    crop_px: int | None = Field(
        None,
        ge=16,
        le=1024,
        description="Clip backbones only: input crop size; the short side keeps the profile's ratio to it "
        "(default: the backbone's profile).",
    )
    motion_crop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Clip backbones only: side of the motion view (the square where the window's frames change "
        "most) as a fraction of the decoded short side, its features averaged with the centre crop's; 0 = centre "
        "crop only (half the cost). Default: the backbone's profile.",
    )


class SplitConfig(Model):
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


class DatasetSourceConfig(Model):
    """One dataset of a multi-dataset manifest (`nexara dataset scan` with no DIR and no --csv)."""

    csv: str = Field(..., min_length=1, description="Its clip,label,source[,hard_negative] CSV (path from the cwd).")
    name: str | None = Field(
        None, min_length=1, description="Dataset name in the manifest's `dataset` column (default: the CSV's folder)."
    )
    root: str | None = Field(None, description="Folder the CSV's clip paths are relative to (default: the CSV's).")


class DatasetConfig(Model):
    """How a folder of videos (or one CSV per dataset) becomes a manifest."""

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
    sources: list[DatasetSourceConfig] = Field(
        default_factory=list,
        description="Datasets scanned into one manifest when `nexara dataset scan` gets no DIR and no --csv.",
    )

    @model_validator(mode="after")
    def _labels_binary(self) -> DatasetConfig:
        bad = {k: v for k, v in self.label_map.items() if v not in (0, 1)}
        if bad:
            raise ValueError(f"label_map values must be 0 or 1, got {bad}")
        names = [s.name for s in self.sources if s.name]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset source names must be unique, got {names}")
        return self


class FeaturesConfig(Model):
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
    window_hop_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Clip backbones: hop between the windows (of `windows.window_s`) a clip is cut into, seconds.",
    )

    @model_validator(mode="after")
    def _no_fusion(self) -> FeaturesConfig:
        if self.decode_num_cpus == self.model_num_cpus:
            raise ValueError(
                "decode_num_cpus and model_num_cpus must differ: Ray Data fuses stages with equal CPU shares"
            )
        return self


class RayConfig(Model):
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


class FinetuneConfig(Model):
    """`nexara finetune`: the clip backbone's last blocks (or the whole network) trained with a linear head on
    its pooled features, under Ray Train (DDP across workers, AMP on CUDA), windows read through Ray Data."""

    train_blocks: list[str] = Field(
        default_factory=lambda: ["Mixed_5b", "Mixed_5c"],
        description="Backbone blocks trained (I3D: Mixed_3b..Mixed_5c, Conv3d_*); ['all'] = the whole network, "
        "[] = the head alone (the frozen-backbone baseline).",
    )
    epochs: int = Field(3, ge=1, le=200, description="Passes over the training windows.")
    batch_size: int = Field(8, ge=1, le=1024, description="Windows per step on each worker.")
    lr_backbone: float = Field(1e-4, gt=0, le=1, description="AdamW learning rate of the trained backbone blocks.")
    lr_head: float = Field(1e-3, gt=0, le=1, description="AdamW learning rate of the head.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="AdamW weight decay.")
    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers (DDP ranks; one GPU each with use_gpu).")
    cpus_per_worker: float = Field(1.0, gt=0, le=256, description="CPUs per worker (without GPUs).")
    use_gpu: bool = Field(False, description="One GPU per worker; AMP (bf16 where supported, else fp16) on.")
    torch_threads: int = Field(1, ge=1, le=256, description="torch threads per CPU worker.")
    seed: int = Field(0, ge=0, description="Seed of the head's initialisation and the window order.")

    @model_validator(mode="after")
    def _check_blocks(self) -> FinetuneConfig:
        if "all" in self.train_blocks and len(self.train_blocks) > 1:
            raise ValueError("train_blocks: 'all' stands alone")
        return self


class TrainingSection(Model):
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
    threshold_mode: Literal["max_f1", "balanced", "fpr"] = Field(
        "max_f1",
        description="Decision threshold: best F1 on validation, best balanced accuracy (recall - false-positive "
        "rate), or the best recall at target_fpr.",
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
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig,  # type: ignore[arg-type]
        description="Fine-tuning the clip backbone (`nexara finetune`).",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingSection:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        if any(not 0 < v <= 1 for v in self.tiers.values()):
            raise ValueError("tier values must be in (0, 1]")
        return self
