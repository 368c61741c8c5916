"""How well the model is doing on each camera, from what the live path already has: operators' reviews
(rolling precision) and the window scores themselves (score drift).

- **Rolling precision** (:func:`rolling_precision`): of a camera's last ``last_n`` reviewed incidents
  (ordered by their latest review; the latest review of an incident wins), the fraction confirmed.
- **Score drift** (:class:`ScoreDrift`): the population stability index (PSI) of a camera's recent window
  scores against a reference distribution of the same camera, on bins cut at the reference's deciles.
  PSI = sum((a - e) ln(a / e)) over bins (a: recent share, e: reference share); by the usual reading,
  below 0.1 is stable, 0.1-0.25 a moderate shift, above 0.25 a significant one (``quality.drift_warn_psi``).

Why the reference is the camera's own first windows and not the model's validation scores: the model
manifest holds only summary metrics of its cross-validation (``cv_metrics``: accuracy, ROC AUC, ECE, ...),
no out-of-fold scores; and those would be clip scores of a balanced fight/no-fight set, whereas a camera
scores windows that are nearly all ordinary, so they would differ on day one. The first
``reference_windows`` scored windows of each camera under a model version are recorded (one JSON file per
camera and model version, :class:`ReferenceStore`) and kept across runs; drift is then "this camera no
longer scores like it did when it was set up" (moved, re-aimed, night mode, a new scene), which is what
an operator can act on.

Pure logic plus small JSON files: no Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nexara.config.upkeep import QualitySection
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "CameraPrecision",
    "CameraQuality",
    "DriftStatus",
    "QualityMonitor",
    "ReferenceStore",
    "ScoreDrift",
    "drift_for_camera",
    "population_stability_index",
    "rolling_precision",
]

_EPS = 1e-4  # share floor: an empty bin would make the log infinite
_SAFE_ID = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class _Event(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def camera_id(self) -> str: ...


class _Review(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def verdict(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CameraPrecision:
    camera_id: str
    reviewed: int  # incidents counted (at most last_n)
    confirmed: int

    @property
    def precision(self) -> float | None:
        """Confirmed / reviewed; None before the first review."""
        return self.confirmed / self.reviewed if self.reviewed else None

    def warning(self, limits: QualitySection) -> bool:
        """Precision below ``precision_warn`` over at least ``precision_min_reviews`` reviews."""
        p = self.precision
        return p is not None and self.reviewed >= limits.precision_min_reviews and p < limits.precision_warn


def rolling_precision(events: Iterable[_Event], reviews: Iterable[_Review], last_n: int) -> dict[str, CameraPrecision]:
    """Per camera, the precision over its last ``last_n`` reviewed incidents. ``events``: the log's event
    records (any kind; they map an incident to its camera); ``reviews``: its reviews in log order.
    Reviews of incidents not in ``events`` are not counted."""
    if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
        raise InvalidInputError(f"last_n must be an integer >= 1, got {last_n!r}")
    camera_of = {e.event_id: e.camera_id for e in events}
    latest: dict[str, str] = {}
    for r in reviews:
        if r.event_id in camera_of:
            latest.pop(r.event_id, None)  # re-inserted: the order is that of each incident's latest review
            latest[r.event_id] = r.verdict
    per_camera: dict[str, deque[bool]] = {}
    for event_id, verdict in latest.items():
        per_camera.setdefault(camera_of[event_id], deque(maxlen=last_n)).append(verdict == "confirmed")
    return {cam: CameraPrecision(cam, len(v), sum(v)) for cam, v in sorted(per_camera.items())}


def population_stability_index(reference: Sequence[float], recent: Sequence[float], bins: int = 10) -> float:
    """PSI of ``recent`` against ``reference`` on bins cut at the reference's quantiles (equal shares of
    the reference; tied quantiles merged, so a reference piled on one value has fewer bins)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(recent, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        raise InvalidInputError("population_stability_index needs scores on both sides")
    if not (np.isfinite(ref).all() and np.isfinite(cur).all()):
        raise InvalidInputError("scores must be finite numbers")
    if bins < 2:
        raise InvalidInputError(f"bins must be >= 2, got {bins}")
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    # bin i holds scores in (edge[i-1], edge[i]]: a reference with ties at an edge stays on one side
    e = np.bincount(np.searchsorted(inner, ref, side="left"), minlength=inner.size + 1) / ref.size
    a = np.bincount(np.searchsorted(inner, cur, side="left"), minlength=inner.size + 1) / cur.size
    e, a = np.maximum(e, _EPS), np.maximum(a, _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True)
class DriftStatus:
    camera_id: str
    psi: float | None  # None until the reference is complete and min_windows recent scores are in
    warning: bool
    recent_windows: int
    reference_windows: int
    reference_complete: bool


@dataclass(frozen=True, slots=True)
class CameraQuality:
    """What a camera's status shows of its quality (:meth:`QualityMonitor.summary`)."""

    review_precision: float | None
    reviews_counted: int
    precision_warning: bool
    score_psi: float | None
    drift_warning: bool
    drift_reference_windows: int
    drift_reference_complete: bool


class ReferenceStore:
    """The reference scores of each camera under each model version: ``<root>/<model_version>/<camera>.json``
    (one file per camera: each camera is scored by one stream actor, so no two writers share a file)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, model_version: str, camera_id: str) -> Path:
        for name, value in (("model_version", model_version), ("camera_id", camera_id)):
            if not value or not set(value) <= _SAFE_ID or value.startswith("."):
                raise InvalidInputError(f"{name} {value!r} cannot name a reference file")
        return self.root / model_version / f"{camera_id}.json"

    def load(self, model_version: str, camera_id: str) -> list[float] | None:
        path = self.path(model_version, camera_id)
        try:
            data = json.loads(path.read_text())
            scores = [float(s) for s in data["scores"]]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("drift reference %s unreadable (%s); a new one is recorded", path, exc)
            return None
        return scores if scores and all(math.isfinite(s) for s in scores) else None

    def save(self, model_version: str, camera_id: str, scores: Sequence[float]) -> Path:
        path = self.path(model_version, camera_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        body = {"camera_id": camera_id, "model_version": model_version, "scores": [round(s, 5) for s in scores]}
        with open(tmp, "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path


class ScoreDrift:
    """Score drift of one camera: the first ``reference_windows`` scores become its reference (unless a
    stored one is given), then the PSI of the last ``recent_windows`` scores against it, once at least
    ``min_windows`` of them are in; ``warning`` when it reaches ``warn_psi``. Thread-safe."""

    def __init__(
        self,
        camera_id: str,
        *,
        reference: Sequence[float] | None = None,
        reference_windows: int = 500,
        recent_windows: int = 300,
        min_windows: int = 100,
        warn_psi: float = 0.25,
        bins: int = 10,
        on_reference: Callable[[list[float]], object] | None = None,
    ) -> None:
        for name, value in (
            ("reference_windows", reference_windows),
            ("recent_windows", recent_windows),
            ("min_windows", min_windows),
            ("bins", bins),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InvalidInputError(f"{name} must be an integer >= 2, got {value!r}")
        if min_windows > recent_windows:
            raise InvalidInputError(f"min_windows ({min_windows}) must not exceed recent_windows ({recent_windows})")
        if not (isinstance(warn_psi, (int, float)) and math.isfinite(warn_psi) and warn_psi > 0):
            raise InvalidInputError(f"warn_psi must be a number > 0, got {warn_psi!r}")
        self.camera_id = camera_id
        self.reference_windows = reference_windows
        self.min_windows = min_windows
        self.warn_psi = float(warn_psi)
        self.bins = bins
        self._on_reference = on_reference
        self._lock = threading.Lock()
        self._reference: list[float] = list(reference or [])
        self._complete = bool(reference)
        self._recent: deque[float] = deque(maxlen=recent_windows)

    def push(self, score: float) -> None:
        """One scored window's calibrated probability."""
        if not (isinstance(score, (int, float)) and math.isfinite(score)):
            raise InvalidInputError(f"score must be a finite number, got {score!r}")
        completed = None
        with self._lock:
            if not self._complete:
                self._reference.append(float(score))
                if len(self._reference) >= self.reference_windows:
                    self._complete = True
                    completed = list(self._reference)
            else:
                self._recent.append(float(score))
        if completed is not None and self._on_reference is not None:
            try:
                self._on_reference(completed)
            except OSError as exc:  # not persisted: the reference still holds for this run
                logger.warning("camera %s: drift reference not saved: %s", self.camera_id, exc)

    def status(self) -> DriftStatus:
        with self._lock:
            ref, recent, complete = list(self._reference), list(self._recent), self._complete
        psi = None
        if complete and len(recent) >= self.min_windows:
            psi = population_stability_index(ref, recent, self.bins)
        return DriftStatus(
            camera_id=self.camera_id,
            psi=psi,
            warning=psi is not None and psi >= self.warn_psi,
            recent_windows=len(recent),
            reference_windows=len(ref),
            reference_complete=complete,
        )


def drift_for_camera(
    camera_id: str, section: QualitySection, store: ReferenceStore | None, model_version: str
) -> ScoreDrift:
    """The :class:`ScoreDrift` of a camera per the ``quality`` section: its stored reference for this model
    version when there is one, else its first windows, saved to ``store`` once complete."""
    reference = store.load(model_version, camera_id) if store is not None else None
    on_reference = None
    if store is not None:

        def on_reference(scores: list[float]) -> None:
            path = store.save(model_version, camera_id, scores)
            logger.info("camera %s: drift reference of %d windows saved to %s", camera_id, len(scores), path)

    return ScoreDrift(
        camera_id,
        reference=reference,
        reference_windows=section.drift_reference_windows,
        recent_windows=section.drift_recent_windows,
        min_windows=section.drift_min_windows,
        warn_psi=section.drift_warn_psi,
        bins=section.drift_bins,
        on_reference=on_reference,
    )


class _ReviewedLog(Protocol):
    """What :class:`QualityMonitor` reads of the event log (:class:`actors.event_log.EventLog`)."""

    def read(self, camera_id: str | None = ..., *, offset: int = ..., limit: int = ...) -> Sequence[_Event]: ...
    def reviews(self) -> Sequence[_Review]: ...


class QualityMonitor:
    """The quality of every camera of one source: :meth:`push` each scored window, read :meth:`summary`
    (for the camera status) and :meth:`gauges` (for :data:`actors.live_metrics.QUALITY_METRICS`).
    Precision is recomputed from ``log`` at most every ``refresh_s`` (reviews arrive from the console)."""

    def __init__(
        self,
        section: QualitySection,
        *,
        log: _ReviewedLog | None,
        store: ReferenceStore | None,
        model_version: str,
        refresh_s: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.section = section
        self.log = log
        self.store = store
        self.model_version = model_version
        self.refresh_s = refresh_s
        self._clock = clock or time.monotonic
        self._drift: dict[str, ScoreDrift] = {}
        self._precision: dict[str, CameraPrecision] = {}
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()

    def add_camera(self, camera_id: str) -> None:
        with self._lock:
            if camera_id not in self._drift:
                self._drift[camera_id] = drift_for_camera(camera_id, self.section, self.store, self.model_version)

    def push(self, camera_id: str, score: float) -> None:
        with self._lock:
            drift = self._drift.get(camera_id)
        if drift is None:
            raise InvalidInputError(f"camera {camera_id!r} was not added to the quality monitor")
        drift.push(score)

    def precision(self, camera_id: str) -> CameraPrecision | None:
        now = self._clock()
        with self._lock:
            due = self._refreshed_at is None or now - self._refreshed_at >= self.refresh_s
            if due and self.log is not None:
                events: list[_Event] = []
                while True:  # the log pages at 10,000 records
                    page = self.log.read(offset=len(events), limit=10_000)
                    events.extend(page)
                    if len(page) < 10_000:
                        break
                self._precision = rolling_precision(events, self.log.reviews(), self.section.precision_reviews)
                self._refreshed_at = now
            return self._precision.get(camera_id)

    def drift(self, camera_id: str) -> DriftStatus | None:
        with self._lock:
            drift = self._drift.get(camera_id)
        return None if drift is None else drift.status()

    def gauges(self, camera_id: str) -> list[tuple[str, float]]:
        """(metric, value) of :data:`actors.live_metrics.QUALITY_METRICS` for one camera."""
        from actors.live_metrics import quality_gauges

        return quality_gauges(self.section, self.precision(camera_id), self.drift(camera_id))

    def summary(self, camera_id: str) -> CameraQuality:
        """The quality of one camera for its status (``GET /v1/cameras/{id}``)."""
        p, d = self.precision(camera_id), self.drift(camera_id)
        return CameraQuality(
            review_precision=None if p is None else p.precision,
            reviews_counted=0 if p is None else p.reviewed,
            precision_warning=False if p is None else p.warning(self.section),
            score_psi=None if d is None or d.psi is None else round(d.psi, 4),
            drift_warning=False if d is None else d.warning,
            drift_reference_windows=0 if d is None else d.reference_windows,
            drift_reference_complete=False if d is None else d.reference_complete,
        )
