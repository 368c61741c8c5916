"""The voting ensemble: temporal heads from a model manifest scoring (N, T, D) frame features, combined
by the manifest's vote (soft, majority or k of n), weights, temperature and threshold.

Shared by ``nexara predict``, the training exporter's self-check and the Serve ensemble deployment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nexara.backbones import PreprocessSpec
from nexara.errors import ModelError
from nexara.heads import TemporalHead, create_head
from nexara.metrics import apply_temperature, confidence_tier, k_of_n_vote, logit, majority_vote, soft_vote
from nexara.model_manifest import ModelManifest, read_manifest

log = logging.getLogger(__name__)

_MODELS = Path(__file__).resolve().parent / "models"
SHIPPED_MODEL_DIR = _MODELS / "default"
# The previous default (optical-flow statistics only): no CNN, a fraction of the clip model's CPU.
MOTION_MODEL_DIR = _MODELS / "motion-2026.11.21-2"
# The model wherever none is configured (`serve.model_dir`, `nexara predict --model`): the shipped default,
# or the folder in $NEXARA_MODEL_DIR (e.g. MOTION_MODEL_DIR on a box without the clip model's CPU budget).
DEFAULT_MODEL_DIR = Path(os.environ.get("NEXARA_MODEL_DIR") or SHIPPED_MODEL_DIR)


@dataclass(frozen=True, slots=True)
class EnsembleOutput:
    probability: np.ndarray  # (N,) calibrated P(violence)
    violent: np.ndarray  # (N,) bool at the manifest threshold
    confidence: np.ndarray  # (N,) str tier
    member_probs: np.ndarray  # (N, M)


class EnsembleModel:
    """Members, weights, calibration and threshold from a manifest folder."""

    def __init__(
        self, folder: str | Path, *, device: str = "cpu", vote: str = "manifest", vote_k: int | None = None
    ) -> None:
        self.folder = Path(folder)
        self.manifest: ModelManifest = read_manifest(self.folder)
        #: voting rule: the manifest's, or an override (soft, majority, k_of_n with vote_k).
        self.vote = self.manifest.vote if vote == "manifest" else vote
        self.vote_k = self.manifest.vote_k if vote == "manifest" else vote_k
        if self.vote not in ("soft", "majority", "k_of_n"):
            raise ModelError(f"unknown vote {vote!r}: use manifest, soft, majority or k_of_n")
        if self.vote == "k_of_n" and not (self.vote_k and 1 <= self.vote_k <= len(self.manifest.members)):
            raise ModelError(f"vote k_of_n needs 1 <= vote_k <= {len(self.manifest.members)}, got {self.vote_k}")
        self.device = torch.device(device)
        self.members: list[TemporalHead] = []
        for m in self.manifest.members:
            head = create_head(**m.head_config)
            state = torch.load(self.folder / m.weights_file, map_location="cpu", weights_only=True)
            try:
                head.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelError(f"member {m.name}: weights do not fit its head config: {exc}") from None
            self.members.append(head.to(self.device).eval())
        self.weights = np.asarray(self.manifest.weights, dtype=np.float64)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.manifest.members]

    @property
    def spec(self) -> PreprocessSpec:
        p = self.manifest.preprocessing
        return PreprocessSpec(size_hw=p.size_hw, mean=p.mean, std=p.std, resize=p.resize)

    @property
    def needs_motion(self) -> bool:
        return any(m.input == "motion" for m in self.manifest.members)

    def _tensor(self, name: str, arr: np.ndarray | torch.Tensor | None, dim: int) -> torch.Tensor:
        if arr is None:
            raise ModelError(f"model {self.manifest.version} needs the '{name}' input")
        x = torch.as_tensor(np.asarray(arr, dtype=np.float32)) if not torch.is_tensor(arr) else arr
        if name == "motion" and x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3 or x.shape[-1] != dim:
            raise ModelError(f"expected {name} input (N, T, {dim}), got {tuple(x.shape)}")
        return x.float().to(self.device)

    @torch.inference_mode()
    def member_probs(
        self, feats: np.ndarray | torch.Tensor, motion: np.ndarray | torch.Tensor | None = None
    ) -> np.ndarray:
        """Member P(fight) ``(N, M)`` from appearance features ``(N, T, D)`` and motion ``(N, K)``."""
        man = self.manifest
        xs = {"appearance": self._tensor("appearance", feats, man.feature_dim)}
        if self.needs_motion:
            xs["motion"] = self._tensor("motion", motion, man.motion.dim if man.motion else 0)
        cols = [
            torch.sigmoid(h(xs[m.input])).float().cpu().numpy() for h, m in zip(self.members, man.members, strict=True)
        ]
        return np.stack(cols, axis=1)

    def combine(self, member_probs: np.ndarray) -> EnsembleOutput:
        man = self.manifest
        raw = soft_vote(member_probs, self.weights)
        prob = apply_temperature(logit(raw), man.temperature)
        if self.vote == "soft":
            violent = prob >= man.threshold
        elif self.vote == "majority":
            violent = majority_vote(member_probs, 0.5)
        else:
            violent = k_of_n_vote(member_probs, 0.5, k=int(self.vote_k or 1))
        tiers = confidence_tier(prob, man.threshold, man.tiers)
        return EnsembleOutput(prob, np.asarray(violent, bool), np.atleast_1d(tiers), member_probs)

    def predict(
        self, feats: np.ndarray | torch.Tensor, motion: np.ndarray | torch.Tensor | None = None
    ) -> EnsembleOutput:
        return self.combine(self.member_probs(feats, motion))
