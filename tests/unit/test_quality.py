"""actors.quality: rolling precision per camera from reviews in a real event log on disk (latest review
wins, last N, unknown events ignored), PSI against known values, score drift with a first-run reference
saved and reloaded across runs, the quality gauges, the config section's rules, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from actors.event_log import EventLog
from actors.live_metrics import QUALITY_METRICS, quality_gauges
from actors.quality import (
    QualityMonitor,
    ReferenceStore,
    ScoreDrift,
    drift_for_camera,
    population_stability_index,
    rolling_precision,
)
from nexara.config.upkeep import QualitySection
from nexara.errors import InvalidInputError

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402

pytestmark = pytest.mark.unit


def test_rolling_precision_from_a_real_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    for i in range(6):
        log.append(make_event(i, camera_id="a"))
        log.append(make_event(i, kind="end", seq=1, camera_id="a"))
    for i in range(10, 13):
        log.append(make_event(i, camera_id="b"))
    ids_a = [f"a-{i * 1000}-{i}" for i in range(6)]
    for eid in ids_a[:4]:
        log.append_review(eid, "confirmed", "op")
    log.append_review(ids_a[4], "dismissed", "op")
    log.append_review(ids_a[0], "dismissed", "op", "second look: a hug")  # latest review wins
    log.append_review("b-10000-10", "dismissed", "op")
    log.close()

    reread = EventLog(tmp_path / "events.jsonl")  # from disk, as another process would
    events, reviews = reread.read(limit=10_000), reread.reviews()
    got = rolling_precision(events, reviews, last_n=50)
    assert set(got) == {"a", "b"}
    assert (got["a"].reviewed, got["a"].confirmed) == (5, 3) and got["a"].precision == pytest.approx(0.6)
    assert (got["b"].reviewed, got["b"].confirmed, got["b"].precision) == (1, 0, 0.0)
    # the last 3 by latest review: ids 3 (confirmed), 4 (dismissed), 0 (dismissed, re-reviewed last)
    last3 = rolling_precision(events, reviews, last_n=3)["a"]
    assert (last3.reviewed, last3.confirmed) == (3, 1)
    # a review of an event the log does not hold is not counted
    assert rolling_precision(events[:2], reviews, last_n=50)["a"].reviewed == 1
    limits = QualitySection(precision_warn=0.7, precision_min_reviews=5)  # type: ignore[call-arg]
    assert got["a"].warning(limits) and not got["b"].warning(limits)  # b has too few reviews
    with pytest.raises(InvalidInputError, match="last_n"):
        rolling_precision(events, reviews, last_n=0)
    reread.close()


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.beta(1.2, 8.0, 5000)  # a quiet camera: mostly low scores
    same = rng.beta(1.2, 8.0, 5000)
    shifted = rng.beta(3.0, 3.0, 5000)  # scores moved up (a new scene)
    assert population_stability_index(ref, same) < 0.02
    assert population_stability_index(ref, shifted) > 1.0
    # known value: reference deciles, recent all in the top decile -> sum over bins of (a - e) ln(a / e)
    e, a = np.full(10, 0.1), np.full(10, 1e-4)
    a[-1] = 1.0
    expected = float(np.sum((a - e) * np.log(a / e)))
    assert population_stability_index(np.arange(1000) / 1000, [0.999] * 50) == pytest.approx(expected, rel=1e-6)
    # a reference piled on one value still bins (fewer edges), never divides by zero
    assert np.isfinite(population_stability_index([0.01] * 100, [0.01] * 40 + [0.9] * 10))
    for bad_ref, bad_cur in (([], [0.1]), ([0.1], []), ([0.1, float("nan")], [0.2])):
        with pytest.raises(InvalidInputError):
            population_stability_index(bad_ref, bad_cur)


def test_drift_reference_is_recorded_at_first_run_and_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    section = QualitySection(  # type: ignore[call-arg]
        drift_reference_windows=200, drift_recent_windows=100, drift_min_windows=50, drift_warn_psi=0.25
    )
    store = ReferenceStore(tmp_path / "ref")
    first = drift_for_camera("wall-r0c1", section, store, "2026.11.21-2")
    st = first.status()
    assert st.psi is None and not st.reference_complete
    for s in rng.beta(1.2, 8.0, 200):
        first.push(float(s))
    saved = tmp_path / "ref" / "2026.11.21-2" / "wall-r0c1.json"
    assert saved.is_file() and first.status().reference_complete
    for s in rng.beta(1.2, 8.0, 49):
        first.push(float(s))
    assert first.status().psi is None  # fewer than min_windows recent scores
    first.push(0.05)
    st = first.status()
    assert st.psi is not None and st.psi < 0.25 and not st.warning and st.recent_windows == 50

    # the next run of the same camera and model starts from the stored reference and sees the shift
    second = drift_for_camera("wall-r0c1", section, store, "2026.11.21-2")
    assert second.status().reference_complete and second.status().reference_windows == 200
    for s in rng.beta(3.0, 3.0, 100):
        second.push(float(s))
    st = second.status()
    assert st.psi is not None and st.psi > 0.25 and st.warning
    names = dict(quality_gauges(section, drift=st))
    assert names["nexara_score_drift_warning"] == 1.0 and names["nexara_score_psi"] == st.psi
    assert set(names) <= {n for n, _, _ in QUALITY_METRICS}
    # another model version records its own reference
    assert not drift_for_camera("wall-r0c1", section, store, "other").status().reference_complete


def test_drift_bad_input_and_section_rules(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="min_windows"):
        ScoreDrift("c", recent_windows=10, min_windows=20)
    with pytest.raises(InvalidInputError, match="warn_psi"):
        ScoreDrift("c", warn_psi=0)
    with pytest.raises(InvalidInputError, match="finite"):
        ScoreDrift("c").push(float("inf"))
    with pytest.raises(InvalidInputError, match="cannot name a reference file"):
        ReferenceStore(tmp_path).path("v1", "../etc/passwd")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "cam.json").write_text("{not json")
    assert ReferenceStore(tmp_path).load("v1", "cam") is None  # unreadable: a new one is recorded
    with pytest.raises(ValidationError, match="drift_min_windows"):
        QualitySection(drift_recent_windows=10, drift_min_windows=20)  # type: ignore[call-arg]
    assert quality_gauges(QualitySection()) == []  # type: ignore[call-arg]


def test_monitor_refreshes_precision_from_the_log_and_tracks_drift_per_cell(tmp_path: Path) -> None:
    now = [0.0]
    log = EventLog(tmp_path / "events.jsonl")
    for i in range(3):
        log.append(make_event(i, camera_id="wall-r0c0"))
    section = QualitySection(  # type: ignore[call-arg]
        drift_reference_windows=20, drift_recent_windows=20, drift_min_windows=10, precision_min_reviews=2
    )
    mon = QualityMonitor(
        section, log=log, store=ReferenceStore(tmp_path / "ref"), model_version="v1", refresh_s=30, clock=lambda: now[0]
    )
    for cam in ("wall-r0c0", "wall-r0c1"):
        mon.add_camera(cam)
    assert mon.summary("wall-r0c0").review_precision is None and mon.gauges("wall-r0c0") == []
    log.append_review("wall-r0c0-0-0", "dismissed", "op")
    log.append_review("wall-r0c0-1000-1", "dismissed", "op")
    assert mon.precision("wall-r0c0") is None  # cached until refresh_s has passed
    now[0] = 31.0
    summary = mon.summary("wall-r0c0")
    assert summary.review_precision == 0.0 and summary.reviews_counted == 2 and summary.precision_warning
    for _ in range(20):
        mon.push("wall-r0c1", 0.05)
    for _ in range(10):
        mon.push("wall-r0c1", 0.95)  # a cell that suddenly scores high
    gauges = dict(mon.gauges("wall-r0c1"))
    assert gauges["nexara_score_drift_warning"] == 1.0 and gauges["nexara_score_psi"] > 0.25
    assert "nexara_review_precision" not in gauges  # no reviews on this cell
    assert mon.summary("wall-r0c1").drift_reference_complete
    with pytest.raises(InvalidInputError, match="not added"):
        mon.push("elsewhere", 0.5)
    log.close()
