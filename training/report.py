"""The CV report: ``report.md`` (mean ± std table over folds, a table per dataset, how the folds were
formed, leave-one-dataset-out when run), ``report.json`` and out-of-fold ROC, PR, confusion and
reliability plots. A CV over windows (a clip backbone's window store) is reported per window and per clip
(the max and the mean of its windows' probabilities, :mod:`training.clip_level`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from training.clip_level import CLIP_AGGREGATIONS, clip_level
from training.cv import CVResult
from training.datasets import DatasetLabels, describe_folds, per_dataset


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


def _cell(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def dataset_table(by_dataset: dict[str, dict[str, dict[str, Any]]], *, unit: str = "clips") -> str:
    """Markdown table, one row per dataset and model, from :func:`training.datasets.per_dataset`; ``unit``
    names what was counted (clips or windows)."""
    hn = any(m["n_hard_negative"] for models in by_dataset.values() for m in models.values())
    cols = ["accuracy", "roc_auc", "recall", "fpr"] + (["hard_negative_fpr"] if hn else [])
    head = ["dataset", "model", f"{unit} (fight / no)", *(c.replace("_", " ") for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, models in by_dataset.items():
        for model, m in models.items():
            label = {"baseline": "baseline", "ensemble": "**ensemble**"}.get(model, model)
            count = f"{m['n']} ({m['n_pos']} / {m['n_neg']}" + (f", {m['n_hard_negative']} hard" if hn else "") + ")"
            lines.append(f"| {name} | {label} | {count} | " + " | ".join(_cell(m[c]) for c in cols) + " |")
    return "\n".join(lines)


def _held_out(lodo: CVResult, y: np.ndarray, labels: DatasetLabels) -> dict[str, Any]:
    return {n: v for n, v in per_dataset(lodo, y, labels).items() if n != "all"}


def clip_sections(
    cv: CVResult, y: np.ndarray, labels: DatasetLabels, lodo: CVResult | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Clip-level figures of a CV over windows, per aggregation rule: (JSON part, Markdown lines)."""
    doc: dict[str, Any] = {}
    md: list[str] = []
    for rule in CLIP_AGGREGATIONS:
        clip_cv, y_clip, clip_labels = clip_level(cv, y, labels, rule)
        by_dataset = per_dataset(clip_cv, y_clip, clip_labels)
        doc[rule] = {"summary": clip_cv.summary, "folds": clip_cv.fold_reports, "per_dataset": by_dataset}
        md += [
            f"## Clips: {rule} of the window probabilities (mean ± std over folds, {len(y_clip)} clips)",
            "",
            cv_table(clip_cv),
            "",
            dataset_table(by_dataset),
            "",
        ]
        if lodo is not None:
            lodo_clips, _, _ = clip_level(lodo, y, labels, rule)
            held_out = _held_out(lodo_clips, y_clip, clip_labels)
            doc[rule]["leave_one_dataset_out"] = held_out
            md += [f"Leave one dataset out, clips by the {rule} (scores on the held-out dataset):", ""]
            md += [dataset_table(held_out), ""]
    return doc, md


def write_cv_report(
    cv: CVResult,
    y: np.ndarray,
    out_dir: Path,
    *,
    title: str,
    labels: DatasetLabels | None = None,
    lodo: CVResult | None = None,
) -> Path:
    """report.md + report.json + ROC / PR / confusion / reliability PNGs in ``out_dir``.

    ``labels`` (default: one dataset) gives the per-dataset table; ``lodo`` a leave-one-dataset-out CV of
    the same rows, reported per held-out dataset. When ``labels.clips`` says the rows are windows, every
    table is given per window and per clip (max and mean of its windows); the plots are per window.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    # without labels: one dataset, sources unknown here, so no statement of how folds were formed
    formation = describe_folds(cv, labels) if labels is not None else []
    labels = labels or DatasetLabels.single(np.full(len(y), "", dtype=object))
    windows = labels.clips is not None
    unit = "windows" if windows else "clips"
    by_dataset = per_dataset(cv, y, labels)
    doc: dict[str, Any] = {
        "k": cv.k,
        "rows": unit,
        "summary": cv.summary,
        "folds": cv.fold_reports,
        "best_epochs": cv.best_epochs,
        "wall_s": cv.wall_s,
        "per_dataset": by_dataset,
        "fold_formation": formation,
    }
    if lodo is not None:
        doc["leave_one_dataset_out"] = {
            "held_out": lodo.fold_names,
            "per_dataset": per_dataset(lodo, y, labels),
            "fold_formation": describe_folds(lodo, labels),
            "wall_s": lodo.wall_s,
        }
    clip_doc, clip_md = clip_sections(cv, y, labels, lodo) if windows else ({}, [])
    if windows:
        doc["clip_level"] = clip_doc
    (out_dir / "report.json").write_text(json.dumps(_jsonable(doc), indent=2))
    plots = _plots(cv, y, out_dir)
    rows = f"{len(y)} clips"
    if windows:
        rows = f"{len(y)} windows of {len(set(labels.clips))} clips"  # type: ignore[arg-type]
    md = [
        f"# {title}",
        "",
        f"Grouped (by source) stratified {cv.k}-fold cross-validation, {rows}, wall time {cv.wall_s:.0f} s.",
        "",
        *formation,
        "",
        f"## Pooled{', per window' if windows else ''} (mean ± std over folds)",
        "",
        cv_table(cv),
        "",
        f"## Per dataset{', per window' if windows else ''} (out-of-fold predictions, each decided at its fold's "
        "threshold)",
        "",
        dataset_table(by_dataset, unit=unit),
        "",
        *clip_md,
    ]
    if lodo is not None:
        md += [
            f"## Leave one dataset out{', per window' if windows else ''} (scores on the held-out dataset)",
            "",
            *describe_folds(lodo, labels),
            "",
            dataset_table(_held_out(lodo, y, labels), unit=unit),
            "",
        ]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    return out_dir / "report.md"


def console_summary(cv: CVResult, y: np.ndarray, labels: DatasetLabels, lodo: CVResult | None = None) -> str:
    """What ``nexara evaluate`` prints: the pooled table and the per-dataset tables (windows and clips by
    the max when the rows are windows), and the held-out datasets of leave-one-dataset-out."""
    windows = labels.clips is not None
    unit = "windows" if windows else "clips"
    out = [cv_table(cv), "", f"per dataset ({unit}):", dataset_table(per_dataset(cv, y, labels), unit=unit)]
    if lodo is not None:
        out += ["", f"leave one dataset out ({unit}, scored on the held-out dataset):"]
        out += [dataset_table(_held_out(lodo, y, labels), unit=unit)]
    if windows:
        clip_cv, y_clip, clip_labels = clip_level(cv, y, labels, "max")
        out += ["", "clips (max of the window probabilities):", cv_table(clip_cv)]
        out += ["", "per dataset (clips, max):", dataset_table(per_dataset(clip_cv, y_clip, clip_labels))]
        if lodo is not None:
            lodo_clips, _, _ = clip_level(lodo, y, labels, "max")
            out += ["", "leave one dataset out (clips, max, scored on the held-out dataset):"]
            out += [dataset_table(_held_out(lodo_clips, y_clip, clip_labels))]
    return "\n".join(out) + "\n"


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
