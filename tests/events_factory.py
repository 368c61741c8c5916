"""Alert events for tests: one constructor; each test module binds the defaults its assertions use."""

from __future__ import annotations

from actors.confirmation import AlertEvent


def make_event(
    i: int,
    *,
    kind: str = "start",
    seq: int = 0,
    camera_id: str = "cam-1",
    duration_s: float = 7.5,
    peak: float = 0.91,
    end_reason: str | None = "quiet",
) -> AlertEvent:
    """Event ``i`` of ``camera_id``: starts at i s, is reported 2 s later; an ``end`` lasts ``duration_s``."""
    end = kind == "end"
    return AlertEvent(
        event_id=f"{camera_id}-{i * 1000}-{i}",
        kind=kind,  # type: ignore[arg-type]
        seq=seq,
        camera_id=camera_id,
        start_s=float(i),
        end_s=float(i) + duration_s if end else None,
        at_s=float(i) + 2.0,
        peak_probability=peak,
        mean_probability=0.8,
        tier="HIGH",
        windows=3,
        end_reason=end_reason if end else None,  # type: ignore[arg-type]
    )
