"""Ensemble training and honest evaluation on Ray.

* ``cross_validate``: grouped (by ``source``) stratified K-fold. Every member fit is a Ray task, so
  folds and members run in parallel across the cluster. Inside a fold (``training.inner_folds`` >= 2, the
  default), an inner grouped K-fold over the fold's training sources early-stops the members and gives
  out-of-fold predictions on all of the fold's training clips, which fit the ensemble weights, temperature
  and threshold; then every member is refit on all of the fold's training clips for its median inner best
  epoch and scores the held-out fold - the same procedure that makes the shipped model from all clips.
  With ``inner_folds: 0`` one inner split of ``inner_val_frac`` does both (faster, noisier). The held-out
  fold is touched only for scoring. The plain baseline (logistic regression on mean + std +
  mean-abs-difference of the frame features) runs on the same folds.
* ``train_final``: every member is a Ray Train ``TorchTrainer`` run (GPU workers when asked for), all
  members in parallel, trained on all clips for the epoch count CV chose; checkpoints and results go to a
  storage path (local folder or cloud URI) and a rerun resumes finished members from their checkpoint.
* ``export_model``: members, weights fitted on out-of-fold predictions, temperature, threshold, tiers and
  the backbone's preprocessing into a model manifest folder.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nexara.config import NexaraConfig, TrainingSection
from nexara.errors import NexaraError
from nexara.metrics import (
    aggregate_folds,
    apply_temperature,
    choose_threshold,
    classification_report,
    fit_ensemble_weights,
    fit_temperature,
    logit,
    sigmoid,
    soft_vote,
)
from nexara.model_manifest import (
    MemberEntry,
    ModelManifest,
    MotionEntry,
    PreprocessingEntry,
    sha256_file,
    write_manifest,
)
from nexara.training_config import MemberConfig, TrainConfig
from training.loop import predict_logits, train_member
from training.manifest import greedy_group_split

log = logging.getLogger(__name__)


class TrainingError(NexaraError):
    code = "training_failed"


# --- splits -------------------------------------------------------------------------------------


def grouped_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold grouped by source: no source ever appears on both sides."""
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise TrainingError(f"{k}-fold CV needs at least {k} distinct sources, the data has {n_groups}")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in sgkf.split(np.zeros(len(y)), y, groups)]


def inner_split(
    y: np.ndarray, groups: np.ndarray, idx: np.ndarray, frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into fit / validation parts by whole sources, class-balanced."""
    names = greedy_group_split(y[idx], groups[idx], {"fit": 1 - frac, "val": frac}, seed)
    return idx[names == "fit"], idx[names == "val"]


# --- one member fit (plain Ray task) ------------------------------------------------------------


def _fit_and_score(
    inputs: dict[str, np.ndarray],
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    score_idx: np.ndarray,
    member: MemberConfig,
    train_cfg: TrainConfig,
    threads: int,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    x = member_input(inputs, member)
    res = train_member(x[fit_idx], y[fit_idx], x[val_idx], y[val_idx], member, train_cfg)
    from nexara.heads import create_head

    head = create_head(**res.head_config)
    head.load_state_dict(res.state_dict)
    return {
        "member": member.name,
        "best_epoch": res.best_epoch,
        "val_logits": predict_logits(head, x[val_idx]),
        "score_logits": predict_logits(head, x[score_idx]),
    }


def member_input(inputs: dict[str, np.ndarray], member: MemberConfig) -> np.ndarray:
    if member.input not in inputs:
        raise TrainingError(
            f"member {member.name} reads the '{member.input}' input, which the feature store lacks "
            f"(it has {sorted(inputs)}); extract with features.motion: true"
        )
    return inputs[member.input]


# --- cross-validation ---------------------------------------------------------------------------


def baseline_features(x: np.ndarray) -> np.ndarray:
    """The shared README's probe: mean, std and mean absolute temporal difference of the frame features."""
    return np.concatenate([x.mean(1), x.std(1), np.abs(np.diff(x, axis=1)).mean(1)], axis=1)


def _baseline_probs(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    f = baseline_features(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))
    model.fit(f[tr], y[tr])
    return model.predict_proba(f[te])[:, 1]


@dataclass
class CVResult:
    k: int
    member_names: list[str]
    fold_reports: dict[str, list[dict[str, Any]]]  # name (member / "ensemble" / "baseline") -> per fold
    summary: dict[str, dict[str, Any]]  # name -> aggregate_folds(...)
    oof_member_probs: np.ndarray  # (N, M) out-of-fold member probabilities
    oof_ensemble_probs: np.ndarray  # (N,) out-of-fold calibrated ensemble probability
    oof_baseline_probs: np.ndarray
    best_epochs: dict[str, list[int]]
    folds: list[list[int]] = field(default_factory=list)
    wall_s: float = 0.0


def _fit_calibration(member_probs: np.ndarray, y: np.ndarray, sec: TrainingSection) -> tuple[np.ndarray, float, float]:
    w = fit_ensemble_weights(member_probs, y, shrinkage=sec.weight_shrinkage)
    z = logit(soft_vote(member_probs, w))
    t = fit_temperature(z, y)
    p = apply_temperature(z, t)
    thr = choose_threshold(y, p, mode=sec.threshold_mode, target_fpr=sec.target_fpr)
    return w, t, thr


def cross_validate(
    inputs: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, cfg: NexaraConfig, *, k: int, seed: int = 0
) -> CVResult:
    """Grouped K-fold CV of every member, the ensemble and the baseline. Needs Ray initialised."""
    import ray

    sec = cfg.training
    members = sec.members
    t0 = time.perf_counter()
    for m in members:
        member_input(inputs, m)  # fail before any work when an input is missing
    x = inputs["appearance"]
    x_ref = ray.put({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})
    task = ray.remote(num_cpus=sec.member_num_cpus)(_fit_and_score)
    folds = grouped_folds(y, groups, k, seed)
    nested = sec.inner_folds >= 2

    def run_all(jobs: dict[Any, tuple[Any, ...]], stage: str) -> dict[Any, dict[str, Any]]:
        pending = {task.remote(x_ref, y, *args, sec.torch_threads): key for key, args in jobs.items()}
        out: dict[Any, dict[str, Any]] = {}
        remaining = list(pending)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            key = pending[done[0]]
            try:
                out[key] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                raise TrainingError(
                    f"member {key[-1]} failed on fold {key[0]} ({stage}): {exc.cause if hasattr(exc, 'cause') else exc}"
                ) from None
            log.info("cv %s: fold %s member %s done (%d/%d)", stage, key[0], key[-1], len(out), len(pending))
        return out

    # stage 1: predictions on each fold's training clips that no member saw while fitting
    jobs: dict[Any, tuple[Any, ...]] = {}
    val_sets: list[np.ndarray] = []
    for fi, (tr, te) in enumerate(folds):
        if nested:
            if len(np.unique(groups[tr])) < sec.inner_folds:
                raise TrainingError(
                    f"fold {fi}: {sec.inner_folds} inner folds need as many sources in the fold's training part, "
                    f"it has {len(np.unique(groups[tr]))}; lower training.inner_folds (0 = one inner split)"
                )
            inner = [(tr[a], tr[b]) for a, b in grouped_folds(y[tr], groups[tr], sec.inner_folds, seed + fi)]
            val_sets.append(np.concatenate([b for _, b in inner]))
            for ii, (fit_idx, val_idx) in enumerate(inner):
                for m in members:
                    jobs[(fi, ii, m.name)] = (fit_idx, val_idx, te, m, sec.train)
        else:
            fit_idx, val_idx = inner_split(y, groups, tr, sec.inner_val_frac, seed + fi)
            val_sets.append(val_idx)
            for m in members:
                jobs[(fi, 0, m.name)] = (fit_idx, val_idx, te, m, sec.train)
    first = run_all(jobs, "inner" if nested else "fit")
    n_inner = sec.inner_folds if nested else 1
    best_epochs: dict[str, list[int]] = {m.name: [] for m in members}
    for fi in range(len(folds)):
        for m in members:
            best_epochs[m.name].append(int(np.median([first[(fi, ii, m.name)]["best_epoch"] for ii in range(n_inner)])))
    # stage 2 (nested): every member refit on all of the fold's training clips for its median inner best
    # epoch, without early stopping - what train_final does on all clips for the shipped model
    if nested:
        jobs = {}
        for fi, (tr, te) in enumerate(folds):
            for m in members:
                member = m.model_copy(update={"epochs": max(3, best_epochs[m.name][fi])})
                train_cfg = sec.train.model_copy(update={"early_stopping_patience": None})
                jobs[(fi, m.name)] = (tr, tr, te, member, train_cfg)
        refits = run_all(jobs, "refit")

    n, m_count = len(y), len(members)
    oof_members = np.zeros((n, m_count))
    oof_ens = np.zeros(n)
    oof_base = np.zeros(n)
    reports: dict[str, list[dict[str, Any]]] = {m.name: [] for m in members}
    reports["ensemble"], reports["baseline"] = [], []
    for fi, (tr, te) in enumerate(folds):
        val_idx = val_sets[fi]
        val_p = np.zeros((len(val_idx), m_count))
        te_p = np.zeros((len(te), m_count))
        for j, m in enumerate(members):
            val_p[:, j] = np.concatenate([sigmoid(first[(fi, ii, m.name)]["val_logits"]) for ii in range(n_inner)])
            score = refits[(fi, m.name)] if nested else first[(fi, 0, m.name)]
            te_p[:, j] = sigmoid(score["score_logits"])
        oof_members[te] = te_p
        for j, m in enumerate(members):
            thr_m = choose_threshold(y[val_idx], val_p[:, j], mode=sec.threshold_mode, target_fpr=sec.target_fpr)
            reports[m.name].append(classification_report(y[te], te_p[:, j], thr_m))
        w, t, thr = _fit_calibration(val_p, y[val_idx], sec)
        ens = apply_temperature(logit(soft_vote(te_p, w)), t)
        oof_ens[te] = ens
        reports["ensemble"].append(classification_report(y[te], ens, thr))
        base = _baseline_probs(x, y, tr, te)
        oof_base[te] = base
        reports["baseline"].append(classification_report(y[te], base, 0.5))
    summary = {name: aggregate_folds(r) for name, r in reports.items()}
    return CVResult(
        k=k,
        member_names=[m.name for m in members],
        fold_reports=reports,
        summary=summary,
        oof_member_probs=oof_members,
        oof_ensemble_probs=oof_ens,
        oof_baseline_probs=oof_base,
        best_epochs=best_epochs,
        folds=[te.tolist() for _, te in folds],
        wall_s=time.perf_counter() - t0,
    )


# --- final training on Ray Train ----------------------------------------------------------------

_RESULT_FILE = "result.pt"


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: train one member on all clips, report per epoch, checkpoint the result."""
    import ray
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            if (Path(d) / _RESULT_FILE).is_file():
                # resumed after the member had finished: report the stored result again
                meta = json.loads((Path(d) / "meta.json").read_text())
                with tempfile.TemporaryDirectory() as out:
                    import shutil

                    shutil.copytree(d, out, dirs_exist_ok=True)
                    ray.train.report(meta, checkpoint=ray.train.Checkpoint.from_directory(out))
                return
    torch.set_num_threads(int(config["threads"]))
    member = MemberConfig.model_validate(config["member"])
    x = member_input(ray.get(config["x_ref"]), member)
    y = np.asarray(config["y"])
    train_cfg = TrainConfig.model_validate(config["train"])
    device = "cuda" if torch.cuda.is_available() and config.get("use_gpu") else "cpu"

    def on_epoch(metrics: dict[str, Any]) -> None:
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    res = train_member(x, y, x, y, member, train_cfg, device=device, on_epoch=on_epoch)
    meta = {"member": member.name, "best_epoch": int(res.best_epoch), "done": 1}
    with tempfile.TemporaryDirectory() as out:
        torch.save(
            {"state_dict": res.state_dict, "head_config": res.head_config, "history": res.history},
            Path(out) / _RESULT_FILE,
        )
        (Path(out) / "meta.json").write_text(json.dumps(meta))
        ray.train.report(meta, checkpoint=ray.train.Checkpoint.from_directory(out))


def _fit_member_with_trainer(
    config: dict[str, Any], run_name: str, storage_path: str, cpus: float, use_gpu: bool
) -> dict[str, Any]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"GPU": 1.0} if use_gpu else {"CPU": cpus}
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=storage_path),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise TrainingError(f"{run_name}: Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        payload = torch.load(Path(d) / _RESULT_FILE, map_location="cpu", weights_only=False)
    return payload


def train_final(
    inputs: dict[str, np.ndarray], y: np.ndarray, cfg: NexaraConfig, *, epochs: dict[str, int], run_name: str
) -> dict[str, dict[str, Any]]:
    """Train every member on all clips with Ray Train, members in parallel. Needs Ray initialised."""
    import ray

    sec = cfg.training
    storage = sec.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    use_gpu = sec.use_gpu
    x_ref = ray.put({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})
    # num_cpus=0: the driver task only waits; the trainer's worker holds the CPU share
    fit = ray.remote(num_cpus=0)(_fit_member_with_trainer)
    refs = {}
    for m in sec.members:
        member = m.model_copy(update={"epochs": epochs.get(m.name, m.epochs)})
        train_cfg = sec.train.model_copy(update={"early_stopping_patience": None})
        config = {
            "x_ref": x_ref,
            "y": y.tolist(),
            "member": member.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json"),
            "threads": sec.torch_threads,
            "use_gpu": use_gpu,
        }
        refs[m.name] = fit.remote(config, f"{run_name}-{m.name}", storage, sec.member_num_cpus, use_gpu)
    out = {}
    for name, ref in refs.items():
        try:
            out[name] = ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise TrainingError(f"member {name}: Ray Train run failed: {exc}") from None
        log.info("final: member %s trained", name)
    return out


# --- export -------------------------------------------------------------------------------------


def export_model(
    out_dir: Path,
    trained: dict[str, dict[str, Any]],
    cv: CVResult,
    y: np.ndarray,
    cfg: NexaraConfig,
    *,
    spec: Any,
    inputs: dict[str, np.ndarray],
    training_data: dict[str, Any],
    version: str,
) -> ModelManifest:
    sec = cfg.training
    by_name = {m.name: m for m in sec.members}
    motion_entry = None
    if any(by_name[n].input == "motion" for n in cv.member_names):
        from nexara.motion import MOTION_VERSION, MotionSpec

        motion_entry = MotionEntry(
            version=MOTION_VERSION, hash=MotionSpec().hash(), dim=int(inputs["motion"].shape[-1])
        )
    weights, temperature, threshold = _fit_calibration(cv.oof_member_probs, y, sec)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in cv.member_names:
        wf = out_dir / f"{name}.pt"
        torch.save(trained[name]["state_dict"], wf)
        entries.append(
            MemberEntry(
                name=name,
                head_config=trained[name]["head_config"],
                weights_file=wf.name,
                sha256=sha256_file(wf),
                input=by_name[name].input,
            )
        )
    cv_metrics = {name: {k: v for k, v in s["metrics"].items() if k in _REPORTED} for name, s in cv.summary.items()}
    manifest = ModelManifest(
        version=version,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        backbone=cfg.model.backbone,
        preprocessing=PreprocessingEntry(**spec.to_dict(), hash=spec.hash()),
        frames_per_clip=cfg.media.frames_per_clip,
        feature_dim=int(inputs["appearance"].shape[-1]),
        motion=motion_entry,
        members=entries,
        vote="soft",
        weights=[float(w) for w in weights],
        temperature=float(temperature),
        threshold=float(threshold),
        tiers=dict(sec.tiers),
        training_data=training_data,
        cv_metrics={
            "k": cv.k,
            "oof_ensemble": classification_report(
                y, apply_temperature(logit(soft_vote(cv.oof_member_probs, weights)), temperature), threshold
            ),
            "per_model": cv_metrics,
        },
    )
    write_manifest(manifest, out_dir)
    return manifest


_REPORTED = ("accuracy", "roc_auc", "pr_auc", "f1", "precision", "recall", "fpr", "ece")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def cv_table(cv: CVResult) -> str:
    """Markdown table: every member, the ensemble and the baseline, mean ± std over folds."""
    cols = ("accuracy", "roc_auc", "pr_auc", "f1", "fpr", "ece")
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name in [*cv.member_names, "ensemble", "baseline"]:
        m = cv.summary[name]["metrics"]
        cells = [f"{m[c]['mean']:.3f} ± {m[c]['std']:.3f}" if c in m else "n/a" for c in cols]
        label = {"baseline": "baseline: LR on mean+std+|diff|", "ensemble": "**ensemble**"}.get(name, name)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_cv_report(cv: CVResult, y: np.ndarray, out_dir: Path, *, title: str) -> Path:
    """report.md + report.json + ROC / PR / confusion / reliability PNGs in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(
            _jsonable(
                {
                    "k": cv.k,
                    "summary": cv.summary,
                    "folds": cv.fold_reports,
                    "best_epochs": cv.best_epochs,
                    "wall_s": cv.wall_s,
                }
            ),
            indent=2,
        )
    )
    plots = _plots(cv, y, out_dir)
    md = [
        f"# {title}",
        "",
        f"Grouped (by source) stratified {cv.k}-fold cross-validation, {len(y)} clips, wall time {cv.wall_s:.0f} s.",
        "",
        cv_table(cv),
        "",
    ]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    return out_dir / "report.md"


def _plots(cv: CVResult, y: np.ndarray, out_dir: Path) -> list[Path]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    series = {name: cv.oof_member_probs[:, j] for j, name in enumerate(cv.member_names)}
    series["ensemble"] = cv.oof_ensemble_probs
    series["baseline"] = cv.oof_baseline_probs
    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in series.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2.5 if name == "ensemble" else 1, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.5)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (out-of-fold)")
    ax.legend(fontsize=7)
    paths.append(out_dir / "roc.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in series.items():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, lw=2.5 if name == "ensemble" else 1, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (out-of-fold)")
    ax.legend(fontsize=7)
    paths.append(out_dir / "pr.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    conf = np.asarray(cv.summary["ensemble"]["confusion"])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(conf, cmap="Blues")
    for (i, j), v in np.ndenumerate(conf):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["no fight", "fight"],
        yticklabels=["no fight", "fight"],
        xlabel="predicted",
        ylabel="true",
        title="Ensemble confusion (sum over folds)",
    )
    paths.append(out_dir / "confusion.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    bins = np.linspace(0, 1, 11)
    for name in ("ensemble", "baseline"):
        p = series[name]
        idx = np.clip(np.digitize(p, bins) - 1, 0, 9)
        xs = [p[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).any()]
        ax.plot(xs, ys, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:")
    ax.set(xlabel="predicted P(fight)", ylabel="observed fight rate", title="Reliability (out-of-fold)")
    ax.legend()
    paths.append(out_dir / "reliability.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths
