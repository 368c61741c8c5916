"""Manifests over several datasets: the two shared CCTV collections (surveillance-fight, VioPeru) in one
table with a dataset column, the hard-negative flag, unique sources and folds grouped over all sources."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nexara.config import DatasetConfig, SplitConfig, parse_config
from training.manifest import (
    CsvSource,
    ManifestError,
    assign_splits,
    balance_report,
    build_manifest,
    entries_from_csv,
    entries_from_csvs,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vioperu_clips(shared_clips: Path) -> Path:
    """VioPeru lives beside surveillance-fight in ../shared/data (read there, never copied)."""
    root = shared_clips.parent / "vioperu"
    if not (root / "clips.csv").is_file():
        pytest.skip(f"VioPeru clips not found at {root}")
    return root


def _write_csv(path: Path, rows: list[tuple[str, ...]], header: str = "clip,label,source") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_both_shared_csvs_merge_with_datasets_hard_negatives_and_grouped_folds(
    shared_clips: Path, vioperu_clips: Path
) -> None:
    entries = entries_from_csvs(
        [CsvSource(shared_clips / "clips.csv"), CsvSource(vioperu_clips / "clips.csv")], DatasetConfig()
    )
    assert Counter(e.dataset for e in entries) == {"surveillance-fight": 230, "vioperu": 248}
    hard = [e for e in entries if e.hard_negative]
    assert len(hard) == 39 and {e.dataset for e in hard} == {"vioperu"} and {e.label for e in hard} == {0}
    vp_sources = {e.source for e in entries if e.dataset == "vioperu"}
    assert vp_sources == {"vioperu-and", "vioperu-tala", "vioperu-sanj"}  # no collision: names kept as they are
    assert len({e.path for e in entries}) == len(entries)
    labels = np.array([e.label for e in entries])
    groups = np.array([e.source for e in entries], dtype=object)
    for seed in (0, 1):
        splits = assign_splits(labels, groups, SplitConfig(folds=5, seed=seed))
        owner: dict[str, str] = {}
        for g, s in zip(groups, splits, strict=True):
            assert owner.setdefault(g, s) == s, f"source {g} in two folds"
        assert set(splits) == {f"fold{i}" for i in range(5)}


def test_two_datasets_sharing_a_source_name_build_one_manifest(
    shared_clips: Path, vioperu_clips: Path, tmp_path: Path
) -> None:
    sf = sorted((shared_clips / "fight").glob("*.mp4"))[:2] + sorted((shared_clips / "noFight").glob("*.mp4"))[:2]
    vp = (
        sorted((vioperu_clips / "fight").glob("*.mp4"))[:2] + sorted((vioperu_clips / "hardNegative").glob("*.mp4"))[:2]
    )
    a = _write_csv(
        tmp_path / "alpha" / "clips.csv",
        [(str(p), "fight" if i < 2 else "noFight", "cam1" if i % 2 else f"a{i}") for i, p in enumerate(sf)],
    )
    b = _write_csv(
        tmp_path / "beta" / "clips.csv",
        [
            (str(p), "fight" if i < 2 else "noFight", "cam1" if i % 2 else f"b{i}", str(i >= 2))
            for i, p in enumerate(vp)
        ],
        header="clip,label,source,hard_negative",
    )
    cfg = DatasetConfig(split=SplitConfig(folds=2, seed=0))
    table = build_manifest(entries_from_csvs([CsvSource(a), CsvSource.parse(f"peru={b}")], cfg), cfg)
    rows = table.to_pylist()
    assert len(rows) == 8 and all(r["error"] is None for r in rows)
    assert Counter(r["dataset"] for r in rows) == {"alpha": 4, "peru": 4}
    assert {r["source"] for r in rows if r["source"].endswith("cam1")} == {"alpha/cam1", "peru/cam1"}
    assert {r["source"] for r in rows if not r["source"].endswith("cam1")} == {"a0", "a2", "b0", "b2"}
    assert [r["hard_negative"] for r in rows] == [False] * 6 + [True] * 2
    owner: dict[str, str] = {}
    for r in rows:
        assert owner.setdefault(r["source"], r["split"]) == r["split"]
    out = tmp_path / "m.parquet"
    write_manifest(table, out)
    assert read_manifest(out).equals(table)
    report = balance_report(table)
    assert "hard-neg" in report and "peru" in report and "alpha" in report


def test_multi_dataset_errors_name_file_and_row(tmp_path: Path) -> None:
    cfg = DatasetConfig()
    good = _write_csv(tmp_path / "a" / "clips.csv", [("x.mp4", "fight", "s1")])
    with pytest.raises(ManifestError, match=r"CSV not found: .*nope.csv"):
        entries_from_csvs([CsvSource(good), CsvSource(tmp_path / "nope.csv")], cfg)
    dup = _write_csv(
        tmp_path / "d" / "clips.csv", [("x.mp4", "fight", "s1"), ("y.mp4", "fight", "s1"), ("x.mp4", "0", "s2")]
    )
    with pytest.raises(ManifestError, match=r"d/clips.csv:4: clip 'x.mp4' already listed on line 2"):
        entries_from_csv(dup, cfg)
    bad_hn = _write_csv(
        tmp_path / "h" / "clips.csv", [("x.mp4", "noFight", "s1", "maybe")], "clip,label,source,hard_negative"
    )
    with pytest.raises(ManifestError, match=r"h/clips.csv:2: hard_negative 'maybe'"):
        entries_from_csv(bad_hn, cfg)
    fight_hn = _write_csv(
        tmp_path / "f" / "clips.csv", [("x.mp4", "fight", "s1", "true")], "clip,label,source,hard_negative"
    )
    with pytest.raises(ManifestError, match=r"f/clips.csv:2: a hard negative must be labelled no-fight"):
        entries_from_csv(fight_hn, cfg)
    unknown = _write_csv(tmp_path / "u" / "clips.csv", [("x.mp4", "fight", "s1"), ("z.mp4", "brawl", "s1")])
    with pytest.raises(ManifestError, match=r"u/clips.csv:3: label 'brawl'"):
        entries_from_csvs([CsvSource(good), CsvSource(unknown)], cfg)
    no_col = _write_csv(tmp_path / "c" / "clips.csv", [("x.mp4", "fight")], "clip,label")
    with pytest.raises(ManifestError, match=r"c/clips.csv: missing column"):
        entries_from_csvs([CsvSource(good), CsvSource(no_col)], cfg)
    twin = _write_csv(tmp_path / "other" / "a" / "clips.csv", [("w.mp4", "fight", "s1")])
    with pytest.raises(ManifestError, match="dataset name 'a' is already taken"):
        entries_from_csvs([CsvSource(good), CsvSource(twin)], cfg)
    same_clip = _write_csv(tmp_path / "b" / "clips.csv", [(str(tmp_path / "a" / "x.mp4"), "fight", "s9")])
    with pytest.raises(ManifestError, match=r"b/clips.csv: clip .*x.mp4 is also listed by dataset 'a'"):
        entries_from_csvs([CsvSource(good), CsvSource(same_clip)], cfg)
    # a missing clip file is kept with its error, never dropped
    folds = DatasetConfig(split=SplitConfig(folds=2))
    table = build_manifest(entries_from_csvs([CsvSource(good), CsvSource.parse(f"other={twin}")], folds), folds)
    assert table.num_rows == 2 and all("file not found" in e for e in table.column("error").to_pylist())


def test_dataset_sources_in_config() -> None:
    cfg = parse_config("dataset:\n  sources:\n    - {csv: a/clips.csv}\n    - {csv: b.csv, name: peru}\n")
    assert [(s.csv, s.name) for s in cfg.dataset.sources] == [("a/clips.csv", None), ("b.csv", "peru")]
    with pytest.raises(Exception, match="unique"):
        parse_config("dataset:\n  sources:\n    - {csv: a.csv, name: x}\n    - {csv: b.csv, name: x}\n")


def test_cli_scans_two_csvs_and_config_sources(shared_clips: Path, vioperu_clips: Path, tmp_path: Path) -> None:
    def rows(root: Path, n: int) -> list[tuple[str, ...]]:
        with (root / "clips.csv").open() as f:
            picked = [r for r in csv.DictReader(f)][::40][:n]
        return [(str(root / r["clip"]), r["label"], r["source"]) for r in picked]

    a = _write_csv(tmp_path / "surveillance-fight" / "clips.csv", rows(shared_clips, 4))
    b = _write_csv(tmp_path / "vioperu" / "clips.csv", rows(vioperu_clips, 4))
    out = tmp_path / "m.parquet"
    cmd = [sys.executable, "-m", "nexara.cli", "dataset", "scan", "--out", str(out), "--folds", "2"]
    r = subprocess.run([*cmd, "--csv", str(a), "--csv", str(b)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "8 clips from 2 dataset(s)" in r.stdout and "vioperu" in r.stdout
    table = pq.read_table(out)
    assert Counter(table.column("dataset").to_pylist()) == {"surveillance-fight": 4, "vioperu": 4}
    assert table.column("hard_negative").to_pylist() == [False] * 8  # the CSVs lack the column
    config = tmp_path / "c.yaml"
    config.write_text(f"dataset:\n  sources:\n    - {{csv: '{a}', name: sf}}\n    - {{csv: '{b}'}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "--config", str(config), *cmd[3:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert Counter(pq.read_table(out).column("dataset").to_pylist()) == {"sf": 4, "vioperu": 4}
    r = subprocess.run(
        [*cmd, "--csv", str(a), "--csv", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2 and "missing.csv" in r.stderr and "Traceback" not in r.stderr
