"""Sections of the live path's upkeep: model quality per camera (review precision, score drift) and the
retention of events and evidence clips. Kept out of :mod:`nexara.config.live`, which is at its size limit."""

from __future__ import annotations

from pydantic import Field, model_validator

from nexara.config.base import Frozen, RuleError


class QualitySection(Frozen):
    """Per-camera model quality, exported as metrics: rolling precision from operators' reviews, and the
    drift of window scores from the camera's reference (:mod:`actors.quality`)."""

    precision_reviews: int = Field(
        50, ge=1, le=100_000, description="Rolling precision counts a camera's last N reviewed incidents."
    )
    precision_warn: float = Field(
        0.5, ge=0, le=1, description="Warn when a camera's rolling precision falls below this."
    )
    precision_min_reviews: int = Field(
        10, ge=1, le=100_000, description="Reviews a camera needs before its precision can warn."
    )
    drift_reference_windows: int = Field(
        500,
        ge=2,
        le=1_000_000,
        description="A camera's first N scored windows under a model version become its drift reference.",
    )
    drift_recent_windows: int = Field(300, ge=2, le=1_000_000, description="Recent windows compared with it.")
    drift_min_windows: int = Field(100, ge=2, le=1_000_000, description="Recent windows needed before a PSI.")
    drift_bins: int = Field(10, ge=2, le=100, description="PSI bins (cut at the reference's quantiles).")
    drift_warn_psi: float = Field(
        0.25, gt=0, le=100, description="Warn at this population stability index (0.1 moderate, 0.25 significant)."
    )
    drift_reference_dir: str | None = Field(
        None, description="Where references are kept across runs (default: <sinks.run_dir>/drift-reference)."
    )

    @model_validator(mode="after")
    def _check(self) -> QualitySection:
        if self.drift_min_windows > self.drift_recent_windows:
            raise RuleError("drift_min_windows", "drift_min_windows must not exceed drift_recent_windows")
        return self


class RetentionSection(Frozen):
    """Pruning of old incidents (their events, reviews and evidence clips) by a background task
    (:mod:`actors.retention`). An incident's age is that of its last event."""

    enabled: bool = Field(True, description="Run the retention task.")
    max_age_days: float = Field(30.0, gt=0, le=36_500, description="Incidents older than this are pruned.")
    confirmed_max_age_days: float = Field(
        365.0, gt=0, le=36_500, description="Incidents an operator confirmed are kept this long instead."
    )
    max_total_mb: float | None = Field(
        None,
        gt=0,
        le=100_000_000,
        description="Size budget of event logs and clips together; past it the oldest ended incidents go "
        "first (unconfirmed before confirmed). None: no budget.",
    )
    interval_s: float = Field(3600.0, ge=1, le=604_800, description="Seconds between retention passes.")

    @model_validator(mode="after")
    def _check(self) -> RetentionSection:
        if self.confirmed_max_age_days < self.max_age_days:
            raise RuleError("confirmed_max_age_days", "confirmed incidents cannot be kept shorter than max_age_days")
        return self
