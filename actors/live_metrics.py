"""Prometheus metrics of the live path, per camera (a monitor-wall cell is a camera).

Each stream actor publishes them through ``ray.util.metrics`` (``actors.stream_actor.LiveMetrics``: Ray
stays in the ``*_actor.py`` files); Ray's metrics agent on every node exports
them in Prometheus format (names get Ray's ``ray_`` prefix, counters a ``_total`` suffix) on the node's
metrics export port, and Ray writes a Prometheus service-discovery file listing those ports
(``/tmp/ray/prom_metrics_service_discovery.json``). ``nexara grafana dashboard`` builds a Grafana
dashboard over them (:mod:`serve.grafana`).

:data:`METRICS` is the one list of what is exported (name, kind, help): the actor and the dashboard both
read it. :data:`QUALITY_METRICS` (per camera, from :mod:`actors.quality`) are set by
:func:`quality_gauges`, not from the status records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from actors.quality import CameraPrecision, DriftStatus
    from nexara.config.upkeep import QualitySection

Kind = Literal["counter", "gauge"]

# name (as declared; exported as ray_<name>[_total]), kind, description, status field it comes from
METRICS: tuple[tuple[str, Kind, str, str], ...] = (
    ("nexara_windows_scored", "counter", "Windows scored by the ensemble.", "windows_scored"),
    ("nexara_windows_dropped", "counter", "Windows dropped (oldest first): scoring fell behind.", "windows_dropped"),
    ("nexara_windows_failed", "counter", "Windows whose scoring failed after every retry.", "windows_failed"),
    ("nexara_windows_no_signal", "counter", "Windows not scored: the cell was black or frozen.", "windows_no_signal"),
    ("nexara_windows_gated", "counter", "Windows the cascade's gate kept from the clip model.", "windows_gated"),
    ("nexara_frames_analysed", "counter", "Frames analysed (motion and backbone).", "frames_analysed"),
    ("nexara_alerts", "counter", "Confirmed alerts (start events).", "alerts"),
    ("nexara_events", "counter", "Events written to the event log (start, update, end).", "events"),
    ("nexara_cuts", "counter", "Scene cuts detected (motion statistics restarted).", "cuts"),
    ("nexara_last_score", "gauge", "Calibrated violence probability of the latest window.", "last_score"),
    ("nexara_alert_active", "gauge", "1 while an alert is open on the camera.", "alert_active"),
    ("nexara_stride_seconds", "gauge", "Current hop between windows (adaptive sampling).", "stride_s"),
    ("nexara_verdict_lag_seconds", "gauge", "Wall time from the end of the latest scored window to now.", ""),
    ("nexara_signal_ok", "gauge", "1 when the cell has a picture, 0 when black or frozen.", ""),
)
SOURCE_METRICS: tuple[tuple[str, Kind, str, str], ...] = (
    ("nexara_source_reconnects", "counter", "Reconnections of the source after a drop.", "reconnects"),
    ("nexara_source_fps_in", "gauge", "Frames per second decoded from the source.", "fps_in"),
    ("nexara_source_queued_windows", "gauge", "Windows waiting to be scored.", "queued"),
    ("nexara_source_streaming", "gauge", "1 while the source delivers frames.", ""),
)
# name, kind, description (gauges of actors.quality, tag "camera"; see quality_gauges)
QUALITY_METRICS: tuple[tuple[str, Kind, str], ...] = (
    ("nexara_review_precision", "gauge", "Confirmed / reviewed over the camera's last quality.precision_reviews."),
    ("nexara_reviews_counted", "gauge", "Reviewed incidents the rolling precision counts."),
    ("nexara_review_precision_warning", "gauge", "1 when the rolling precision is below quality.precision_warn."),
    ("nexara_score_psi", "gauge", "Population stability index of recent window scores against the reference."),
    ("nexara_score_drift_warning", "gauge", "1 when the score PSI reaches quality.drift_warn_psi."),
)
TAG_KEYS = ("source", "camera")


def exported_name(name: str, kind: Kind) -> str:
    """The Prometheus series name Ray exports for a metric declared as ``name``."""
    return f"ray_{name}_total" if kind == "counter" else f"ray_{name}"


def quality_gauges(
    limits: QualitySection, precision: CameraPrecision | None = None, drift: DriftStatus | None = None
) -> list[tuple[str, float]]:
    """(metric name, value) of :data:`QUALITY_METRICS` for one camera; a value not known yet (no review,
    no complete reference) is left out rather than exported as 0."""
    out: list[tuple[str, float]] = []
    if precision is not None and precision.precision is not None:
        out.append(("nexara_review_precision", precision.precision))
        out.append(("nexara_reviews_counted", float(precision.reviewed)))
        out.append(("nexara_review_precision_warning", float(precision.warning(limits))))
    if drift is not None and drift.psi is not None:
        out.append(("nexara_score_psi", drift.psi))
        out.append(("nexara_score_drift_warning", float(drift.warning)))
    return out
