from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nexara.config import DatasetConfig, SplitConfig
from training.manifest import (
    ManifestError,
    assign_splits,
    balance_report,
    build_manifest,
    entries_from_csv,
    entries_from_dir,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[2]


def _sources_per_split(rows: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        out[r["split"]].add(r["source"])
    return out


def _assert_grouped(rows: list[dict]) -> None:
    owner: dict[str, str] = {}
    for r in rows:
        assert owner.setdefault(r["source"], r["split"]) == r["split"], f"source {r['source']} in two splits"


def test_csv_manifest_of_shared_clips_is_grouped_and_stratified(shared_clips: Path, tmp_path: Path) -> None:
    cfg = DatasetConfig()
    entries = entries_from_csv(shared_clips / "clips.csv", cfg)
    table = build_manifest(entries, cfg)
    assert table.num_rows == 230
    rows = table.to_pylist()
    assert all(r["error"] is None for r in rows)
    assert len({r["content_hash"] for r in rows}) == 230
    assert all(r["fps"] and 5 <= r["fps"] <= 31 for r in rows)
    assert all(r["frame_count"] and 15 <= r["frame_count"] <= 160 for r in rows)
    _assert_grouped(rows)
    splits = {r["split"] for r in rows}
    assert splits == {"train", "val", "test"}
    for s in splits:
        sub = [r for r in rows if r["split"] == s]
        frac_pos = sum(r["label"] for r in sub) / len(sub)
        assert 0.25 <= frac_pos <= 0.75, (s, frac_pos)
    n_train = sum(r["split"] == "train" for r in rows)
    assert 0.55 * 230 <= n_train <= 0.85 * 230
    out = tmp_path / "m.parquet"
    write_manifest(table, out)
    assert read_manifest(out).equals(table)
    report = balance_report(table)
    assert "train" in report and "fight%" in report


def test_grouped_k_folds_never_share_a_source(shared_clips: Path) -> None:
    import csv

    with (shared_clips / "clips.csv").open() as f:
        rows = list(csv.DictReader(f))
    import numpy as np

    labels = np.array([1 if r["label"] == "fight" else 0 for r in rows])
    groups = np.array([r["source"] for r in rows], dtype=object)
    for seed in (0, 1):
        splits = assign_splits(labels, groups, SplitConfig(folds=5, seed=seed))
        assert set(splits) == {f"fold{i}" for i in range(5)}
        _assert_grouped([{"source": g, "split": s} for g, s in zip(groups, splits, strict=True)])


def test_dir_scan_dedupes_labels_and_records_unreadable(shared_clips: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "Violence").mkdir(parents=True)
    (root / "normal").mkdir()
    (root / "unrelated").mkdir()
    fights = sorted((shared_clips / "fight").glob("*.mp4"))[:3]
    calm = sorted((shared_clips / "noFight").glob("*.mp4"))[:3]
    for f in fights:
        shutil.copy(f, root / "Violence" / f.name)
    for f in calm:
        shutil.copy(f, root / "normal" / f.name)
    shutil.copy(fights[0], root / "normal" / "same_bytes_as_a_fight.mp4")  # identical content
    (root / "normal" / "notes.mp4").write_text("this is not a video")
    shutil.copy(calm[0], root / "unrelated" / "x.mp4")
    cfg = DatasetConfig(split=SplitConfig(train=0.5, val=0.25, test=0.25))
    entries = entries_from_dir(root, cfg)
    assert len(entries) == 8  # unrelated/ ignored
    table = build_manifest(entries, cfg)
    rows = table.to_pylist()
    assert table.num_rows == 7  # the duplicate appears once
    by_name = {Path(r["path"]).name: r for r in rows}
    assert "same_bytes_as_a_fight.mp4" not in by_name
    assert by_name[fights[0].name]["label"] == 1
    assert by_name[calm[0].name]["label"] == 0
    bad = by_name["notes.mp4"]
    assert bad["error"] and "not" in bad["error"].lower()
    _assert_grouped(rows)


def test_source_regex_groups_by_file_name(tmp_path: Path, shared_clips: Path) -> None:
    root = tmp_path / "ds"
    (root / "fight").mkdir(parents=True)
    src = sorted((shared_clips / "fight").glob("*.mp4"))[0]
    shutil.copy(src, root / "fight" / "camA_001.mp4")
    entries = entries_from_dir(root, DatasetConfig(), source_regex=r"^(cam[A-Z])_")
    assert entries[0].source == "camA"
    with pytest.raises(ManifestError, match="does not match"):
        entries_from_dir(root, DatasetConfig(), source_regex=r"^zzz")


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="dataset folder not found"):
        entries_from_dir(tmp_path / "missing", DatasetConfig())
    (tmp_path / "empty" / "fight").mkdir(parents=True)
    with pytest.raises(ManifestError, match="no videos found"):
        entries_from_dir(tmp_path / "empty", DatasetConfig())
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("clip,label\nfight/a.mp4,fight\n")
    with pytest.raises(ManifestError, match="missing column"):
        entries_from_csv(csv_path, DatasetConfig())
    csv_path.write_text("clip,label,source\nfight/a.mp4,maybe,s1\n")
    with pytest.raises(ManifestError, match=r"c.csv:2: label 'maybe'"):
        entries_from_csv(csv_path, DatasetConfig())
    not_parquet = tmp_path / "m.parquet"
    not_parquet.write_text("x")
    with pytest.raises(ManifestError, match="not a Parquet manifest"):
        read_manifest(not_parquet)


def test_cli_scan_prints_balance(shared_clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.parquet"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nexara.cli",
            "dataset",
            "scan",
            "--csv",
            str(shared_clips / "clips.csv"),
            "--out",
            str(out),
            "--folds",
            "5",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "230 clips" in r.stdout and "fold4" in r.stdout
    assert set(pq.read_table(out).column("split").to_pylist()) == {f"fold{i}" for i in range(5)}
    bad = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "dataset", "scan", str(tmp_path / "nope"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode == 2 and "dataset folder not found" in bad.stderr and "Traceback" not in bad.stderr
