"""Dataset manifest: a folder of labelled videos (or a clip,label,source CSV) -> one Parquet table.

Rows carry path, label, source, content hash (identical files kept once), media metadata and a split
that is stratified by label and grouped by ``source`` so that no recording lands in two splits.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
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
            entries.append(ClipEntry(f.resolve(), label, source))
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


def entries_from_csv(csv_path: Path, cfg: DatasetConfig, *, root: Path | None = None) -> list[ClipEntry]:
    """``clip,label,source`` rows; ``clip`` relative to ``root`` (default: the CSV's folder)."""
    if not csv_path.is_file():
        raise ManifestError(f"CSV not found: {csv_path}")
    base = root or csv_path.parent
    label_map = {k.lower(): v for k, v in cfg.label_map.items()}
    entries: list[ClipEntry] = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"clip", "label", "source"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"{csv_path}: missing column(s) {sorted(missing)}; need clip,label,source")
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
            entries.append(ClipEntry((base / row["clip"]).resolve(), label, source))
    if not entries:
        raise ManifestError(f"{csv_path}: no rows")
    return entries


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
            log.info("duplicate content: %s is identical to %s; kept once", e.path, seen[digest])
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
    return "\n".join(lines)
