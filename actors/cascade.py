"""The cascade (``serve.cascade``): a cheap member of the model scores every window first, and the
expensive model (the clip backbone and the whole vote) runs only on the windows the gate passes.

The gate is one of the manifest's members that reads the motion statistics (flow statistics the stream
actor computes anyway), run in the stream actor: a window whose gate probability is below
``gate_threshold`` is not sent to the model and gets the gate's verdict, a :class:`~actors.records.Verdict`
whose probability is the gate member's own probability (its head's sigmoid: below ``gate_threshold``,
not calibrated by the ensemble's temperature), ``violent`` False and ``details["gated"]`` True. The
gate threshold must not exceed the confirmation's ``enter_threshold`` (checked where both are known), so
a gated window never counts toward an alert. Pure logic and torch, no Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actors.records import Verdict, WindowInfo, span_of
from nexara.errors import ConfigError, ModelError
from nexara.model_manifest import ModelManifest

logger = logging.getLogger(__name__)

GateScore = Callable[[np.ndarray], float]


@dataclass(frozen=True, slots=True)
class Gate:
    """The cascade's gate: ``score`` maps a window's motion vector to the gate member's probability."""

    member: str
    threshold: float
    score: GateScore
    model_version: str = ""

    def verdict(self, window: WindowInfo) -> Verdict | None:
        """The gate's verdict for a window it keeps from the model, or None to let the window through.
        A window without motion statistics always goes through (there is nothing to gate on)."""
        if window.motion is None:
            return None
        p = float(self.score(window.motion))
        if p >= self.threshold:
            return None
        details: dict[str, Any] = {
            "violence_probability": round(p, 6),
            "violent": False,
            "gated": True,
            "gate_member": self.member,
            "gate_threshold": self.threshold,
            "members": {self.member: round(p, 6)},
            "model_version": self.model_version,
        }
        return Verdict(*span_of(window), p, details)


def check_gate_threshold(threshold: float, enter_threshold: float, camera_id: str) -> None:
    """A gated window gets a probability below the gate threshold: above ``enter_threshold`` it could
    start an alert the model never saw."""
    if threshold > enter_threshold:
        raise ConfigError(
            f"camera {camera_id}: serve.cascade.gate_threshold ({threshold:g}) must be <= "
            f"confirmation.enter_threshold ({enter_threshold:g}): a window the gate keeps from the model "
            "must not count toward an alert"
        )


def load_gate(folder: str | Path, manifest: ModelManifest, member: str, threshold: float) -> Gate:
    """The gate of ``member`` of the model in ``folder`` (its head and weights, on CPU, one thread's worth).
    Refuses a member the manifest does not have or one that does not read the motion statistics."""
    import torch

    from nexara.heads import create_head

    names = [m.name for m in manifest.members]
    entry = next((m for m in manifest.members if m.name == member), None)
    if entry is None:
        raise ModelError(f"serve.cascade.gate_member {member!r} is not a member of model {manifest.version} ({names})")
    if entry.input != "motion":
        motion = [m.name for m in manifest.members if m.input == "motion"] or "none"
        raise ModelError(
            f"serve.cascade.gate_member {member!r} reads {entry.input} features, not the motion statistics the "
            f"stream computes anyway; members of model {manifest.version} that read motion: {motion}"
        )
    head = create_head(**entry.head_config)
    state = torch.load(Path(folder) / entry.weights_file, map_location="cpu", weights_only=True)
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"gate member {member}: weights do not fit its head config: {exc}") from None
    head.eval()

    def score(motion: np.ndarray) -> float:
        x = torch.as_tensor(np.asarray(motion, dtype=np.float32)).reshape(1, 1, -1)  # (N, T=1, K)
        with torch.inference_mode():
            return float(torch.sigmoid(head(x)).reshape(-1)[0])

    logger.info("cascade gate: member %s, threshold %.3f", member, threshold)
    return Gate(member, float(threshold), score, manifest.version)
