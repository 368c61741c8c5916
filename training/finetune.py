"""`nexara finetune`: the clip backbone's last blocks (or the whole network) trained end to end with a linear
head on its pooled features, under Ray Train, on the 2-s windows the live path scores.

- **Data** comes through Ray Data: the dataset manifest's clips are cut into windows by the same decode
  step as feature extraction (:class:`training.clip_features.DecodeWindows`, the run's clip spec), in CPU
  tasks beside the trainer; every window carries its clip's label. Nothing is materialised: each epoch
  streams the windows again, so the data never has to fit in memory.
- **Training** is a ``TorchTrainer``: ``training.finetune.num_workers`` ranks (DDP through
  ``ray.train.torch.prepare_model``; one GPU each with ``use_gpu``, AMP there: bf16 where the GPU has it,
  else fp16 with a gradient scaler), AdamW with separate learning rates for the trained blocks and the head,
  class-balanced BCE. BatchNorm statistics stay frozen (small per-rank batches); the blocks named in
  ``train_blocks`` (their convolutions and BN offsets) and the head learn, the rest keeps its Kinetics
  weights. ``train_blocks: []`` trains the head alone: the frozen-backbone baseline on the same folds.
- **The same grouped CV**: the manifest's ``fold*`` splits (grouped by source, from ``nexara dataset scan
  --folds K``); each fold is fine-tuned on the others and scores its held-out windows, reported per dataset
  at window level and clip level (max over a clip's windows). Then one fit on every clip.
- **Output**: ``backbone.pt`` (the fine-tuned backbone's state dict, the format ``model.weights`` takes),
  ``head.pt``, ``finetune.json`` (settings, clip spec, per-fold and per-dataset figures, wall times) and
  ``oof_windows.parquet``. To ship it: set ``model.weights`` to ``backbone.pt``, extract features and train
  the ensemble as usual; the model folder then carries that backbone (:mod:`training.export`).
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from nexara.backbones import ClipSpec, backbone_kind, effective_clip_spec
from nexara.backbones.clip import ClipBackbone
from nexara.config import NexaraConfig
from nexara.config.offline import FinetuneConfig
from nexara.errors import TrainingError

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.pt"
HEAD_FILE = "head.pt"
REPORT_FILE = "finetune.json"
OOF_FILE = "oof_windows.parquet"
_RESULT_FILE = "result.pt"
_ID_COLUMNS = ("content_hash", "source", "label", "window_index")


def trainable_modules(net: nn.Module, blocks: Sequence[str]) -> list[nn.Module]:
    """The blocks of ``net`` named ``blocks`` (its children, and the children of a ``ModuleDict`` among them,
    e.g. ``Mixed_5c`` for I3D's ``mixed.Mixed_5c``); ``["all"]`` is the whole network. An unknown name is an error
    that lists the names there are."""
    if list(blocks) == ["all"]:
        return [net]
    by_name: dict[str, nn.Module] = {}
    for name, child in net.named_children():  # top-level blocks, and those held in a ModuleDict/List
        inner = child.named_children() if isinstance(child, (nn.ModuleDict, nn.ModuleList)) else [(name, child)]
        by_name.update((n, m) for n, m in inner if any(True for _ in m.parameters()))
    unknown = [b for b in blocks if b not in by_name]
    if unknown:
        raise TrainingError(
            f"training.finetune.train_blocks: no block named {unknown}; the backbone has {list(by_name)}"
        )
    return [by_name[b] for b in blocks]


class FinetuneNet(nn.Module):
    """A clip backbone (uint8 windows in, pooled features out) and a linear head: one logit per window."""

    def __init__(self, backbone: ClipBackbone, train_blocks: Sequence[str], dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        for module in trainable_modules(backbone.net, train_blocks):
            for p in module.parameters():
                p.requires_grad_(True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(int(backbone.feature_dim), 1))

    def train(self, mode: bool = True) -> FinetuneNet:
        super().train(mode)
        for m in self.backbone.modules():  # frozen statistics: per-rank batches are a handful of windows
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(windows).pooled).squeeze(1)

    def trained_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: fine-tune on the ``train`` shard, then rank 0 scores the whole ``holdout`` dataset
    and checkpoints the backbone, the head and the held-out probabilities."""
    import ray.train
    import ray.train.torch

    from nexara.backbones import create_clip_backbone

    ft = FinetuneConfig.model_validate(config["finetune"])
    torch.manual_seed(ft.seed)
    torch.set_num_threads(ft.torch_threads)
    spec = ClipSpec.from_dict(config["spec"])
    backbone = create_clip_backbone(config["backbone"], spec=spec, weights=config["weights"], autocast=False)
    net = FinetuneNet(backbone, ft.train_blocks)
    model = ray.train.torch.prepare_model(net)  # DDP when there is more than one rank
    device = ray.train.torch.get_device()
    groups = [{"params": list(net.head.parameters()), "lr": ft.lr_head}]
    if net.trained_parameters():
        groups.append({"params": net.trained_parameters(), "lr": ft.lr_backbone})
    opt = torch.optim.AdamW(groups, weight_decay=ft.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(config["pos_weight"]), device=device))
    amp = _amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    rank = ray.train.get_context().get_world_rank()

    def batches(shard: Any, buffer: int | None = None) -> Any:
        for b in shard.iter_batches(batch_size=ft.batch_size, batch_format="numpy", local_shuffle_buffer_size=buffer):
            yield b, torch.from_numpy(np.ascontiguousarray(b["frames"])).to(device)

    train_shard = ray.train.get_dataset_shard("train")
    for epoch in range(ft.epochs):
        model.train()
        total, seen = 0.0, 0
        for b, x in batches(train_shard, buffer=2 * ft.batch_size):  # windows mixed within a few batches
            y = torch.as_tensor(b["label"], dtype=torch.float32, device=device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(y)
            seen += len(y)
        ray.train.report({"epoch": epoch, "loss": total / max(seen, 1), "windows": seen, "rank": rank})

    if rank != 0:
        ray.train.report({"done": 1})
        return
    model.eval()
    scored: dict[str, list[Any]] = {k: [] for k in (*_ID_COLUMNS, "p")}
    with torch.no_grad():
        for b, x in batches(ray.train.get_dataset_shard("holdout")):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                p = torch.sigmoid(net(x).float()).cpu().numpy()
            for k in _ID_COLUMNS:
                scored[k].extend(b[k].tolist())
            scored["p"].extend(p.tolist())
    with tempfile.TemporaryDirectory() as out:
        torch.save(
            {
                "backbone": {k: v.detach().cpu().contiguous() for k, v in backbone.net.state_dict().items()},
                "head": {k: v.detach().cpu() for k, v in net.head.state_dict().items()},
                "holdout": scored,
                "world_size": ray.train.get_context().get_world_size(),
            },
            Path(out) / _RESULT_FILE,
        )
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(out))


class _WindowRows:
    """``Dataset.map_batches`` step: decoded windows -> the columns the trainer reads (failed clips out)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        out = {k: np.asarray(batch[k])[ok] for k in ("content_hash", "source", "window_index")}
        out["label"] = np.asarray(batch["label"])[ok].astype(np.float32)
        out["frames"] = np.stack([batch["frames"][i] for i in np.flatnonzero(ok)]) if ok.any() else np.zeros(0)
        return out


def _windows_dataset(items: list[dict[str, Any]], cfg: NexaraConfig, spec: ClipSpec) -> Any:
    import math

    import ray

    from training.clip_features import DecodeWindows

    decode_cfg = cfg.model_copy(deep=True)
    decode_cfg.features.motion = False  # the trainer reads frames only
    blocks = max(1, math.ceil(len(items) / cfg.features.clips_per_block))
    clips = ray.data.from_items(items, override_num_blocks=blocks)
    windows = clips.flat_map(DecodeWindows(decode_cfg, spec), num_cpus=cfg.features.decode_num_cpus)
    return windows.map_batches(_WindowRows(), batch_format="numpy", num_cpus=cfg.features.decode_num_cpus)


@dataclass
class FitResult:
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    holdout: dict[str, list[Any]]
    world_size: int
    wall_s: float


def fit_once(
    train_items: list[dict[str, Any]],
    holdout_items: list[dict[str, Any]],
    cfg: NexaraConfig,
    spec: ClipSpec,
    run_name: str,
) -> FitResult:
    """One Ray Train run: fine-tune on ``train_items``' windows, score ``holdout_items``' (may be empty)."""
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ft = cfg.training.finetune
    labels = np.array([int(r["label"]) for r in train_items])
    if labels.min(initial=1) == labels.max(initial=0):
        raise TrainingError(f"{run_name}: the training clips hold one class only; fine-tuning needs both")
    storage = cfg.training.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    # manifests list clips by class (all fights, then the rest): a seeded shuffle of the clips, and a small
    # local shuffle of the windows each epoch, keep the batches mixed
    shuffled = list(train_items)
    random.Random(ft.seed).shuffle(shuffled)
    datasets = {"train": _windows_dataset(shuffled, cfg, spec)}
    # an empty holdout still needs a dataset to iterate: one row of the training set, ignored afterwards
    datasets["holdout"] = _windows_dataset(holdout_items or train_items[:1], cfg, spec)
    resources = {"GPU": 1.0} if ft.use_gpu else {"CPU": ft.cpus_per_worker}
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={
            "finetune": ft.model_dump(mode="json"),
            "spec": spec.to_dict(),
            "backbone": cfg.model.backbone,
            "weights": cfg.model.weights,
            "pos_weight": float((labels == 0).sum() / max((labels == 1).sum(), 1)),
        },
        scaling_config=ScalingConfig(num_workers=ft.num_workers, use_gpu=ft.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=storage),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray Train wraps worker errors in its own types
        raise TrainingError(f"{run_name}: Ray Train run failed: {exc}") from None
    if result.checkpoint is None:
        raise TrainingError(f"{run_name}: Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        payload = torch.load(Path(d) / _RESULT_FILE, map_location="cpu", weights_only=True)
    holdout = payload["holdout"] if holdout_items else {k: [] for k in (*_ID_COLUMNS, "p")}
    return FitResult(
        payload["backbone"], payload["head"], holdout, int(payload["world_size"]), time.perf_counter() - t0
    )


@dataclass
class FinetuneReport:
    settings: dict[str, Any]
    folds: list[dict[str, Any]] = field(default_factory=list)
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    final_wall_s: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "settings": self.settings,
                "folds": self.folds,
                "per_dataset": self.per_dataset,
                "final_wall_s": self.final_wall_s,
            },
            indent=2,
        )


def _readable_rows(manifest: Path) -> list[dict[str, Any]]:
    from training.manifest import read_manifest

    table = read_manifest(manifest)
    cols = [
        c
        for c in ("path", "content_hash", "label", "source", "split", "dataset", "duration_s", "error")
        if c in table.column_names
    ]
    rows = [r for r in table.select(cols).to_pylist() if not r.get("error")]
    if not rows:
        raise TrainingError(f"{manifest}: no readable clip")
    for r in rows:
        r.setdefault("dataset", "")
        r["dataset"] = r["dataset"] or "all"
    return rows


def _metrics(rows: list[dict[str, Any]], oof: pa.Table) -> dict[str, dict[str, Any]]:
    """Window-level and clip-level (max over a clip's windows) AUC and accuracy at 0.5, per dataset."""
    from nexara.metrics import classification_report

    dataset_of = {r["content_hash"]: r["dataset"] for r in rows}
    hashes = np.asarray(oof.column("content_hash").to_pylist(), dtype=object)
    y = np.asarray(oof.column("label").to_numpy(), dtype=np.int64)
    p = np.asarray(oof.column("p").to_numpy(), dtype=np.float64)
    ds = np.array([dataset_of.get(h, "all") for h in hashes], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(ds.tolist())):
        m = ds == name
        clips = sorted(set(hashes[m].tolist()))
        clip_y = np.array([y[m & (hashes == c)][0] for c in clips])
        clip_p = np.array([p[m & (hashes == c)].max() for c in clips])
        w, c = classification_report(y[m], p[m]), classification_report(clip_y, clip_p)
        out[name] = {
            "windows": int(m.sum()),
            "clips": len(clips),
            "window_auc": w["roc_auc"],
            "window_accuracy": w["accuracy"],
            "clip_auc": c["roc_auc"],
            "clip_accuracy": c["accuracy"],
        }
    return out


def run_finetune(
    manifest: Path, out_dir: Path, cfg: NexaraConfig, *, cv: bool = True, final: bool = True
) -> FinetuneReport:
    """Grouped CV over the manifest's folds (when ``cv``), then a fit on every clip (when ``final``)."""
    from cluster.runtime import ray_session

    if backbone_kind(cfg.model.backbone) != "clip":
        raise TrainingError(
            f"nexara finetune trains a clip backbone; model.backbone is '{cfg.model.backbone}' (a frame backbone)"
        )
    spec = effective_clip_spec(cfg)
    rows = _readable_rows(manifest)
    folds = sorted({str(r["split"]) for r in rows})
    if cv and not all(f.startswith("fold") for f in folds):
        raise TrainingError(
            f"{manifest}: splits {folds} are not grouped folds; build it with `nexara dataset scan --folds K`"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    ft = cfg.training.finetune
    report = FinetuneReport(
        settings={
            "backbone": cfg.model.backbone,
            "weights": cfg.model.weights,
            "spec": spec.to_dict(),
            "spec_hash": spec.hash(),
            "finetune": ft.model_dump(mode="json"),
            "manifest": str(manifest),
            "clips": len(rows),
        },
    )
    items = [{k: r[k] for k in ("path", "content_hash", "label", "source", "split", "duration_s")} for r in rows]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with ray_session(cfg.ray):
        if cv:
            parts = []
            for fold in folds:
                train_items = [r for r in items if r["split"] != fold]
                holdout = [r for r in items if r["split"] == fold]
                res = fit_once(train_items, holdout, cfg, spec, f"finetune-{stamp}-{fold}")
                part = pa.table(
                    {
                        **{k: res.holdout[k] for k in _ID_COLUMNS},
                        "p": res.holdout["p"],
                        "fold": [fold] * len(res.holdout["p"]),
                    }
                )
                parts.append(part)
                report.folds.append(
                    {
                        "fold": fold,
                        "train_clips": len(train_items),
                        "holdout_clips": len(holdout),
                        "holdout_windows": part.num_rows,
                        "ranks": res.world_size,
                        "wall_s": round(res.wall_s, 1),
                    }
                )
                log.info("finetune %s: %d held-out windows scored in %.0f s", fold, part.num_rows, res.wall_s)
            oof = pa.concat_tables(parts)
            pq.write_table(oof, out_dir / OOF_FILE)
            report.per_dataset = _metrics(rows, oof)
        if final:
            res = fit_once(items, [], cfg, spec, f"finetune-{stamp}-final")
            torch.save(res.backbone, out_dir / BACKBONE_FILE)
            torch.save(res.head, out_dir / HEAD_FILE)
            report.final_wall_s = round(res.wall_s, 1)
    (out_dir / REPORT_FILE).write_text(report.to_json() + "\n", encoding="utf-8")
    return report
