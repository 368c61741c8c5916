"""actors.confirmation: k-of-n start, hysteresis exit, cooldown, max length, stable ids, config checks."""

from __future__ import annotations

import itertools

import pytest

from actors.confirmation import AlertEvent, Confirmer
from nexara.config import ConfirmationSection as ConfirmationConfig

pytestmark = pytest.mark.unit

HOP_S = 1.0
WINDOW_S = 2.0


def feed(confirmer: Confirmer, scores: list[float], t0_s: float = 0.0) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for i, p in enumerate(scores):
        start_s = t0_s + i * HOP_S
        events.extend(confirmer.push(start_s, start_s + WINDOW_S, p))
    return events


def cfg(**kw: object) -> ConfirmationConfig:
    base: dict[str, object] = dict(
        enter_threshold=0.7,
        exit_threshold=0.4,
        k=3,
        n=5,
        exit_windows=3,
        cooldown_s=10.0,
        max_event_s=60.0,
        update_every_s=3.0,
    )
    base.update(kw)
    return ConfirmationConfig(**base)  # type: ignore[arg-type]


def test_sustained_incident_gives_start_updates_end_with_one_id() -> None:
    c = Confirmer("cam1", cfg())
    scores = [0.1] * 5 + [0.9, 0.95, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9] + [0.1] * 6
    events = feed(c, scores)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"update"} and len(kinds) >= 3
    assert len({e.event_id for e in events}) == 1
    assert [e.seq for e in events] == list(range(len(events)))
    start, end = events[0], events[-1]
    assert start.camera_id == "cam1" and start.end_s is None and start.clip_path is None
    assert start.start_s == pytest.approx(5.0)  # first hot window's start
    assert start.at_s == pytest.approx(7.0 + WINDOW_S)  # confirmed by the third hot window
    assert end.end_s == pytest.approx(14.0 + WINDOW_S)  # last window at or above exit
    assert end.end_reason == "quiet"
    assert end.peak_probability == pytest.approx(0.95)
    assert end.tier == "HIGH"
    assert 0.1 < end.mean_probability < 0.95
    # updates at most every update_every_s
    times = [e.at_s for e in events if e.kind != "end"]
    assert all(b - a >= 3.0 for a, b in itertools.pairwise(times))
    assert not c.active
    d = start.to_dict()
    assert d["event_id"] == start.event_id and d["kind"] == "start" and d["end_s"] is None


def test_isolated_spikes_give_nothing() -> None:
    c = Confirmer("cam1", cfg())
    scores = [0.1, 0.9, 0.1, 0.1, 0.1, 0.95, 0.1, 0.2, 0.1, 0.1, 0.99, 0.9, 0.1, 0.1, 0.1, 0.1]
    assert feed(c, scores) == []


def test_hysteresis_keeps_alert_alive_between_exit_and_enter() -> None:
    c = Confirmer("cam1", cfg(update_every_s=1000.0))
    scores = [0.9, 0.9, 0.9] + [0.5, 0.45, 0.6, 0.5] * 5 + [0.3, 0.3, 0.3]
    events = feed(c, scores)
    assert [e.kind for e in events] == ["start", "end"]
    assert events[1].end_s == pytest.approx((len(scores) - 4) * HOP_S + WINDOW_S)
    # two quiet windows (< m) do not end it
    c2 = Confirmer("cam2", cfg(update_every_s=1000.0))
    events2 = feed(c2, [0.9, 0.9, 0.9, 0.2, 0.2, 0.6, 0.2, 0.2, 0.5])
    assert [e.kind for e in events2] == ["start"] and c2.active


def test_cooldown_suppresses_then_allows_retrigger() -> None:
    c = Confirmer("cam1", cfg(cooldown_s=10.0, update_every_s=1000.0))
    first = feed(c, [0.9, 0.9, 0.9, 0.1, 0.1, 0.1])  # ends at window 5 -> at_s = 7
    assert [e.kind for e in first] == ["start", "end"]
    ended_at_s = first[-1].at_s
    again = feed(c, [0.9, 0.9, 0.9, 0.9], t0_s=6.0)  # window ends 8..11 < 17: suppressed
    assert again == [] and c.starts_suppressed > 0
    quiet = feed(c, [0.1] * 6, t0_s=10.0)
    assert quiet == []
    later = feed(c, [0.9, 0.9, 0.9], t0_s=ended_at_s + 10.0)
    assert [e.kind for e in later] == ["start"]
    assert later[0].event_id != first[0].event_id


def test_max_event_s_forces_end() -> None:
    c = Confirmer("cam1", cfg(max_event_s=10.0, cooldown_s=5.0, update_every_s=1000.0))
    events = feed(c, [0.9] * 30)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["start", "end"]
    end = events[1]
    assert end.end_reason == "max_duration"
    assert end.end_s is not None and end.end_s - end.start_s == pytest.approx(10.0, abs=HOP_S)
    # still violent after the cooldown: a new incident with a new id
    assert kinds.count("start") >= 2
    assert len({e.event_id for e in events}) == kinds.count("start")


def test_finish_ends_open_incident() -> None:
    c = Confirmer("cam1", cfg())
    assert [e.kind for e in feed(c, [0.9] * 4)] == ["start"]
    (end,) = c.finish()
    assert end.kind == "end" and end.end_reason == "stream_end" and not c.active
    assert c.finish() == []


@pytest.mark.parametrize("reason", ["shutdown", "removed"])
def test_a_stopped_stream_ends_its_incident_with_the_stop_reason(reason: str) -> None:
    """A SIGTERM'd app (`shutdown`) or a deleted camera (`removed`) is told apart from a source that ended."""
    c = Confirmer("cam1", cfg())
    feed(c, [0.9] * 4)
    (end,) = c.finish(reason=reason)  # type: ignore[arg-type]
    assert end.end_reason == reason


def test_tiers_default_and_custom() -> None:
    assert cfg().tier_for(0.9) == "HIGH"
    assert cfg().tier_for(0.7) == "MEDIUM"
    assert cfg().tier_for(0.5) == "LOW"
    custom = cfg(tiers={"RED": 0.95, "AMBER": 0.75})
    assert custom.tier_for(0.96) == "RED"
    assert custom.tier_for(0.8) == "AMBER"
    assert custom.tier_for(0.71) == "AMBER"  # below every threshold: the lowest tier
    events = feed(Confirmer("c", custom), [0.96] * 3)
    assert events[0].tier == "RED"


def test_out_of_order_window_is_ignored() -> None:
    c = Confirmer("cam1", cfg())
    feed(c, [0.9, 0.9], t0_s=10.0)
    assert c.push(0.0, 2.0, 0.9) == []
    assert c.windows_out_of_order == 1


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("enter_threshold", {"enter_threshold": 1.5}),
        ("exit_threshold", {"exit_threshold": 0.8}),
        ("exit_threshold", {"exit_threshold": -0.1}),
        ("k", {"k": 0}),
        ("k", {"k": 6, "n": 5}),
        ("n", {"n": 0, "k": 1}),
        ("exit_windows", {"exit_windows": 0}),
        ("cooldown_s", {"cooldown_s": -1.0}),
        ("max_event_s", {"max_event_s": 0.0}),
        ("update_every_s", {"update_every_s": float("nan")}),
        ("tiers", {"tiers": {"HIGH": 2.0}}),
        ("tiers", {"tiers": {}}),
    ],
)
def test_bad_config_names_the_field(field: str, kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=field):
        cfg(**kw)


def test_bad_push_arguments() -> None:
    c = Confirmer("cam1", cfg())
    with pytest.raises(ValueError, match="probability"):
        c.push(0.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="window"):
        c.push(2.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="camera_id"):
        Confirmer("", cfg())
