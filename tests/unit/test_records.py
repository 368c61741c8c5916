"""actors.records: the status records give the HTTP API's JSON shape in one place."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.quality import CameraQuality
from actors.records import CellStatus, SourceStatus

pytestmark = pytest.mark.unit

CELL_KEYS = [
    "camera_id", "box", "signal", "alert_active", "active_event_id", "fps_analysed", "frames_analysed",
    "windows_made", "windows_scored", "windows_dropped", "windows_failed", "windows_no_signal", "windows_gated",
    "cuts",
    "stride_s", "last_score", "last_window_end_s", "events", "alerts", "quality",
]  # fmt: skip
SOURCE_KEYS = [
    "source_id", "url", "state", "error", "fps_in", "frames_in", "stream_time_s", "connects", "reconnects",
    "corrupt_packets", "queued", "in_flight", "windows_dropped", "windows_scored", "started_unix_s", "cells",
]  # fmt: skip


def _cell(camera_id: str, scored: int, dropped: int) -> CellStatus:
    return CellStatus(
        camera_id, (0, 0, 320, 240), "ok", False, None, 9.5, 100, scored + dropped, scored, dropped, 0, 0, 0, 1,
        1.0, 0.12, 10.0, 0, 0,
    )  # fmt: skip


def test_source_status_to_dict_is_the_http_shape() -> None:
    st = SourceStatus(
        "wall", "wall.mp4", "streaming", None, 10.0, 120, 12.0, 1, 0, 0, 1, 2, 1.0e9,
        (_cell("wall-r0c0", 5, 1), _cell("wall-r0c1", 3, 2)),
    )  # fmt: skip
    d = st.to_dict()
    assert list(d) == SOURCE_KEYS and list(d["cells"][0]) == CELL_KEYS
    assert (d["windows_scored"], d["windows_dropped"]) == (8, 3)
    assert d["cells"][1]["box"] == [0, 0, 320, 240]
    assert st.cell("wall-r0c1") is st.cells[1] and st.cell("nope") is None
    assert d["cells"][0]["quality"] is None  # a worker without a quality monitor
    quality = CameraQuality(0.75, 4, False, 0.3, True, 500, True)
    cell = replace(st.cells[0], quality=quality)
    assert replace(st, cells=(cell,)).to_dict()["cells"][0]["quality"] == {
        "review_precision": 0.75, "reviews_counted": 4, "precision_warning": False, "score_psi": 0.3,
        "drift_warning": True, "drift_reference_windows": 500, "drift_reference_complete": True,
    }  # fmt: skip
    with_config = replace(st, config={"id": "wall"}).to_dict()
    assert list(with_config) == [*SOURCE_KEYS, "config"] and with_config["config"] == {"id": "wall"}
