"""Dataset manifest: a folder of labelled videos, or one or several clip,label,source CSVs (one per
dataset) -> one Parquet table.

Rows carry path, label, source, the dataset they come from, the hard-negative flag, content hash
(identical files kept once), media metadata and a split that is stratified by label and grouped by
``source`` over every source of every dataset, so that no recording lands in two splits.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import StratifiedGroupKFold

from nexara.config import DatasetConfig, SplitConfig
from nexara.errors import ManifestError, MediaError
from nexara.media import probe

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.int8()),
        ("source", pa.string()),
        ("dataset", pa.string()),
        ("hard_negative", pa.bool_()),
        ("content_hash", pa.string()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frame_count", pa.int64()),
        ("codec", pa.string()),
        ("split", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class ClipEntry:
    path: Path
    label: int
    source: str
    dataset: str = ""  # the dataset's name (default: its folder's name)
    hard_negative: bool = False  # an ordinary scene that detectors are known to flag (label 0)


@dataclass(frozen=True, slots=True)
class CsvSource:
    """One dataset of a multi-dataset manifest: its clips.csv, its name and the root its clip paths are
    relative to (default: the CSV's folder)."""

    csv: Path
    name: str | None = None  # default: the CSV's parent folder name
    root: Path | None = None

    @classmethod
    def parse(cls, spec: str, *, root: Path | None = None) -> CsvSource:
        """``[NAME=]PATH`` as given to ``nexara dataset scan --csv``."""
        name, sep, path = spec.partition("=")
        if sep and name and "/" not in name and not Path(spec).exists():
            return cls(Path(path), name, root)
        return cls(Path(spec), None, root)

    @property
    def dataset(self) -> str:
        return self.name or self.csv.resolve().parent.name


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def entries_from_dir(root: Path, cfg: DatasetConfig, *, source_regex: str | None = None) -> list[ClipEntry]:
    """Class sub-folders (names looked up case-insensitively in ``cfg.label_map``) holding videos.

    Without ``source_regex`` every clip is its own group; with it, group 1 of the regex applied to the
    file name (or the whole match) names the source recording.
    """
    if not root.is_dir():
        raise ManifestError(f"dataset folder not found: {root}")
    label_map = {k.lower(): v for k, v in cfg.label_map.items()}
    exts = {e.lower() for e in cfg.extensions}
    rx = re.compile(source_regex) if source_regex else None
    entries: list[ClipEntry] = []
    unknown: list[str] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = label_map.get(sub.name.lower())
        if label is None:
            unknown.append(sub.name)
            continue
        for f in sorted(sub.rglob("*")):
            if not f.is_file() or f.suffix.lower() not in exts:
                continue
            if rx is not None:
                m = rx.search(f.name)
                if m is None:
                    raise ManifestError(f"--source-regex {source_regex!r} does not match file name {f.name}")
                source = m.group(1) if m.groups() else m.group(0)
            else:
                source = f"{sub.name}/{f.stem}"
            entries.append(ClipEntry(f.resolve(), label, source, root.resolve().name))
    if unknown:
        log.warning("ignored sub-folders not in label_map: %s", ", ".join(unknown))
    if not entries:
        raise ManifestError(
            f"no videos found under {root}: expected class sub-folders named one of "
            f"{sorted(label_map)} holding files with extensions {sorted(exts)}"
        )
    if rx is None:
        log.warning("no source column: every clip is its own group; pass --csv or --source-regex to group")
    return entries


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def entries_from_csv(
    csv_path: Path, cfg: DatasetConfig, *, root: Path | None = None, dataset: str | None = None
) -> list[ClipEntry]:
    """``clip,label,source[,hard_negative]`` rows; ``clip`` relative to ``root`` (default: the CSV's
    folder); ``dataset`` defaults to the CSV's folder name. A clip listed twice is an error."""
    if not csv_path.is_file():
        raise ManifestError(f"CSV not found: {csv_path}")
    base = root or csv_path.parent
    name = dataset or csv_path.resolve().parent.name
    label_map = {k.lower(): v for k, v in cfg.label_map.items()}
    entries: list[ClipEntry] = []
    first_row: dict[Path, int] = {}
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        missing = {"clip", "label", "source"} - columns
        if missing:
            raise ManifestError(f"{csv_path}: missing column(s) {sorted(missing)}; need clip,label,source")
        has_hn = "hard_negative" in columns
        for lineno, row in enumerate(reader, start=2):
            raw = (row["label"] or "").strip()
            if raw in ("0", "1"):
                label = int(raw)
            elif raw.lower() in label_map:
                label = label_map[raw.lower()]
            else:
                raise ManifestError(
                    f"{csv_path}:{lineno}: label {raw!r} is neither 0/1 nor a label_map key {sorted(label_map)}"
                )
            source = (row["source"] or "").strip()
            if not source:
                raise ManifestError(f"{csv_path}:{lineno}: empty source")
            clip = (row["clip"] or "").strip()
            if not clip:
                raise ManifestError(f"{csv_path}:{lineno}: empty clip")
            path = (base / clip).resolve()
            if path in first_row:
                raise ManifestError(f"{csv_path}:{lineno}: clip {clip!r} already listed on line {first_row[path]}")
            first_row[path] = lineno
            hard_negative = _hard_negative(row.get("hard_negative"), csv_path, lineno) if has_hn else False
            if hard_negative and label != 0:
                raise ManifestError(f"{csv_path}:{lineno}: a hard negative must be labelled no-fight, got {raw!r}")
            entries.append(ClipEntry(path, label, source, name, hard_negative))
    if not entries:
        raise ManifestError(f"{csv_path}: no rows")
    return entries


def _hard_negative(raw: str | None, csv_path: Path, lineno: int) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ManifestError(f"{csv_path}:{lineno}: hard_negative {raw!r} is not one of true/false/1/0/yes/no")


def entries_from_csvs(sources: Sequence[CsvSource], cfg: DatasetConfig) -> list[ClipEntry]:
    """Every dataset's rows in one list. Dataset names must differ; a source name that two datasets
    share is prefixed with the dataset (``name/source``) in both, so groups never merge across datasets;
    a clip listed by two datasets is an error."""
    if not sources:
        raise ManifestError("no dataset CSV given")
    per_dataset: dict[str, list[ClipEntry]] = {}
    csv_of: dict[str, Path] = {}
    for src in sources:
        name = src.dataset
        if name in per_dataset:
            raise ManifestError(
                f"{src.csv}: dataset name {name!r} is already taken by {csv_of[name]}; name them (--csv NAME=PATH)"
            )
        per_dataset[name] = entries_from_csv(src.csv, cfg, root=src.root, dataset=name)
        csv_of[name] = src.csv
    owners: dict[str, set[str]] = {}
    for name, entries in per_dataset.items():
        for e in entries:
            owners.setdefault(e.source, set()).add(name)
    shared = sorted(s for s, names in owners.items() if len(names) > 1)
    if shared:
        log.warning("source name(s) %s appear in several datasets: prefixed with the dataset name", shared)
    out: list[ClipEntry] = []
    listed_by: dict[Path, str] = {}
    for name, entries in per_dataset.items():
        for e in entries:
            if e.path in listed_by:
                raise ManifestError(f"{csv_of[name]}: clip {e.path} is also listed by dataset {listed_by[e.path]!r}")
            listed_by[e.path] = name
            source = f"{name}/{e.source}" if e.source in shared else e.source
            out.append(ClipEntry(e.path, e.label, source, name, e.hard_negative))
    return out


def assign_splits(labels: np.ndarray, groups: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """Stratified (by label) and grouped (by source) split names for every row.

    ``cfg.folds`` = k gives 'fold0'..'fold{k-1}'; otherwise fractions: the sources are cut into many
    stratified group folds and whole folds go to train / val / test in proportion.
    """
    n_groups = len(np.unique(groups))
    out = np.empty(len(labels), dtype=object)
    if cfg.folds is not None:
        k = min(cfg.folds, n_groups)
        if k < 2:
            raise ManifestError(f"need at least 2 distinct sources for {cfg.folds} folds, got {n_groups}")
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=cfg.seed)
        for i, (_, idx) in enumerate(sgkf.split(np.zeros(len(labels)), labels, groups)):
            out[idx] = f"fold{i}"
        return out
    fractions = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    names = [n for n, f in fractions.items() if f > 0]
    if n_groups < len(names):
        raise ManifestError(f"need at least {len(names)} distinct sources for {names}, got {n_groups}")
    return greedy_group_split(labels, groups, {n: fractions[n] for n in names}, cfg.seed)


def greedy_group_split(
    labels: np.ndarray, groups: np.ndarray, fractions: dict[str, float], seed: int, restarts: int = 64
) -> np.ndarray:
    """Assign whole groups to splits so each split's per-class counts approach its fraction of the total.

    Greedy (largest groups first, each to the split with the largest remaining per-class deficit), with
    seeded restarts that shuffle the order of equal-size groups; the lowest squared error wins.
    """
    uniq, inverse = np.unique(groups.astype(str), return_inverse=True)
    classes = np.unique(labels)
    counts = np.stack([np.bincount(inverse[labels == c], minlength=len(uniq)) for c in classes], axis=1)
    names = list(fractions)
    target = np.array([fractions[n] for n in names])[:, None] * counts.sum(axis=0)[None, :]
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        order = np.lexsort((rng.random(len(uniq)), -counts.sum(axis=1)))
        filled = np.zeros_like(target)
        assign = np.empty(len(uniq), dtype=np.int64)
        for g in order:
            deficit = ((target - filled) * counts[g][None, :]).sum(axis=1) / max(counts[g].sum(), 1)
            gain = ((target - filled) ** 2).sum(axis=1) - ((target - filled - counts[g][None, :]) ** 2).sum(axis=1)
            choice = int(np.argmax(gain + 1e-6 * deficit))
            assign[g] = choice
            filled[choice] += counts[g]
        err = float(((target - filled) ** 2).sum())
        if any(filled[i].sum() == 0 for i in range(len(names))):
            err += 1e12  # every split must hold something
        if best is None or err < best[0]:
            best = (err, assign.copy())
    assert best is not None
    return np.array([names[i] for i in best[1][inverse]], dtype=object)


def build_manifest(
    entries: Iterable[ClipEntry],
    cfg: DatasetConfig,
    *,
    timeout_s: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> pa.Table:
    """Hash, dedupe and probe every clip, then split. Unreadable clips stay, with ``error`` set."""
    entries = list(entries)
    rows: list[dict[str, object]] = []
    seen: dict[str, Path] = {}
    for i, e in enumerate(entries):
        if progress is not None:
            progress(i, len(entries))
        if not e.path.is_file():
            rows.append(_row(e, "", error=f"file not found: {e.path}"))
            continue
        digest = file_sha256(e.path)
        if digest in seen:
            log.warning("duplicate content: %s is identical to %s; kept once", e.path, seen[digest])
            continue
        seen[digest] = e.path
        try:
            info = probe(e.path, timeout_s=timeout_s)
        except MediaError as exc:
            rows.append(_row(e, digest, error=str(exc.reason)))
            continue
        rows.append(
            _row(
                e,
                digest,
                duration_s=info.duration_s,
                fps=info.fps,
                width=info.width,
                height=info.height,
                frame_count=info.frame_count,
                codec=info.codec,
            )
        )
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    groups = np.array([r["source"] for r in rows], dtype=object)
    splits = assign_splits(labels, groups, cfg.split)
    for r, s in zip(rows, splits, strict=True):
        r["split"] = s
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def _row(e: ClipEntry, digest: str, *, error: str | None = None, **meta: object) -> dict[str, object]:
    return {
        "path": str(e.path),
        "label": e.label,
        "source": e.source,
        "dataset": e.dataset,
        "hard_negative": e.hard_negative,
        "content_hash": digest,
        "duration_s": meta.get("duration_s"),
        "fps": meta.get("fps"),
        "width": meta.get("width"),
        "height": meta.get("height"),
        "frame_count": meta.get("frame_count"),
        "codec": meta.get("codec"),
        "split": None,
        "error": error,
    }


def write_manifest(table: pa.Table, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)


def read_manifest(path: Path) -> pa.Table:
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path}: not a Parquet manifest ({exc})") from None
    missing = {"path", "label", "source", "split"} - set(table.column_names)
    if missing:
        raise ManifestError(f"{path}: manifest lacks column(s) {sorted(missing)}")
    return table


def balance_report(table: pa.Table) -> str:
    """Class balance per split, one line each, plus sources per split."""
    rows = table.select(["label", "split", "source", "error"]).to_pylist()
    splits = sorted({r["split"] for r in rows}, key=lambda s: ({"train": 0, "val": 1, "test": 2}.get(s, 3), s))
    lines = [f"{'split':<8} {'clips':>6} {'fight':>6} {'no-fight':>8} {'fight%':>7} {'sources':>8} {'errors':>7}"]
    for s in splits:
        sub = [r for r in rows if r["split"] == s]
        pos = sum(r["label"] == 1 for r in sub)
        neg = len(sub) - pos
        errs = sum(r["error"] is not None for r in sub)
        srcs = len({r["source"] for r in sub})
        pct = 100.0 * pos / len(sub) if sub else 0.0
        lines.append(f"{s:<8} {len(sub):>6} {pos:>6} {neg:>8} {pct:>6.1f}% {srcs:>8} {errs:>7}")
    if {"dataset", "hard_negative"} <= set(table.column_names):  # manifests written before datasets lack them
        lines += ["", *dataset_report(table)]
    return "\n".join(lines)


def dataset_report(table: pa.Table) -> list[str]:
    """Per dataset: clips, classes, hard negatives, sources and the splits its sources fell into (splits
    are grouped over the sources of every dataset, so a dataset with few sources spans few splits)."""
    rows = table.select(["label", "split", "source", "dataset", "hard_negative"]).to_pylist()
    lines = [f"{'dataset':<20} {'clips':>6} {'fight':>6} {'no-fight':>8} {'hard-neg':>8} {'sources':>8}  splits"]
    for name in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == name]
        pos = sum(r["label"] == 1 for r in sub)
        hn = sum(bool(r["hard_negative"]) for r in sub)
        srcs = len({r["source"] for r in sub})
        splits = ",".join(sorted({str(r["split"]) for r in sub}))
        lines.append(f"{name:<20} {len(sub):>6} {pos:>6} {len(sub) - pos:>8} {hn:>8} {srcs:>8}  {splits}")
    return lines
