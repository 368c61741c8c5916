"""A dataset manifest over a few shared clips, one source each unless given (plain helper module, no fixtures:
``from manifest_factory import clips_manifest``; ``tests/`` is on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nexara.config import NexaraConfig
from training.manifest import build_manifest, entries_from_csv, write_manifest


def clips_manifest(
    shared_clips: Path, clips: Sequence[str | tuple[str, str]], out_dir: Path, *, folds: int | None = None
) -> Path:
    """``out_dir/manifest.parquet`` of ``clips`` (paths under ``shared_clips``, labelled by their folder;
    ``(path, source)`` pairs name the source, plain paths get ``src<i>``), split into ``folds`` grouped folds
    when given."""
    pairs = [(c, f"src{i}") if isinstance(c, str) else c for i, c in enumerate(clips)]
    lines = ["clip,label,source"] + [f"{shared_clips / c},{c.split('/')[0]},{s}" for c, s in pairs]
    csv_path = out_dir / "clips.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    cfg = NexaraConfig().dataset
    if folds is not None:
        cfg.split.folds = folds
    out = out_dir / "manifest.parquet"
    write_manifest(build_manifest(entries_from_csv(csv_path, cfg), cfg), out)
    return out
