"""The tree-ensemble head: fitted by scikit-learn, stored and scored as torch buffers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nexara.errors import ModelError
from nexara.heads.base import TemporalHead, frame_differences
from nexara.heads.factory import register_head

__all__ = ["ForestHead"]

_FOREST_KINDS = ("extra_trees", "random_forest")
_P_EPS = 1e-6  # leaf probabilities are clamped to [eps, 1 - eps] before the logit


@register_head("forest")
class ForestHead(TemporalHead):
    """A tree ensemble (extremely randomised trees, or a random forest) on clip-level vectors.

    Fitted by scikit-learn, not by gradient descent (:attr:`gradient_free`): the training loop calls
    :meth:`fit` once. The fitted trees are stored as buffers (per tree and node: split feature,
    threshold, left / right child, leaf P(fight); leaves point to themselves), so the head saves and
    loads as a plain ``state_dict``, scores in torch and exports to ONNX like every other head: the
    forward pass walks all trees at once for ``depth`` steps of ``gather`` and averages the leaves'
    probabilities, returned as a logit. ``n_nodes`` and ``depth`` are the buffer sizes, set by
    :meth:`fit` (an unfitted head is one leaf per tree at P = 0.5).

    Input ``(B, T, D)`` is pooled into the mean over T (clip vectors arrive as T = 1); with ``motion``
    the mean |frame difference| is appended. Thresholds are stored as the largest float32 not above
    scikit-learn's float64 threshold, so the float32 comparison takes the same branch as scikit-learn
    on float32 input: the probabilities equal ``predict_proba`` to float rounding.

    Trees are the member kind that the research on the shared clips found most complementary to the
    linear and MLP probes on the optical-flow statistics (see README, the default model).
    """

    gradient_free = True
    feature: Tensor
    threshold: Tensor
    left: Tensor
    right: Tensor
    value: Tensor

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        kind: str = "extra_trees",
        n_trees: int = 500,
        max_features: str | float = "sqrt",
        min_samples_leaf: int = 2,
        max_depth: int | None = None,
        n_nodes: int = 1,
        depth: int = 0,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        if kind not in _FOREST_KINDS:
            raise ModelError(f"head 'forest': kind must be one of {', '.join(_FOREST_KINDS)}, got {kind!r}")
        if not 1 <= int(n_trees) <= 100_000:
            raise ModelError(f"head 'forest': n_trees must be 1..100000, got {n_trees}")
        if isinstance(max_features, str) and max_features not in ("sqrt", "log2"):
            raise ModelError(f"head 'forest': max_features must be 'sqrt', 'log2' or a fraction, got {max_features!r}")
        if not isinstance(max_features, str) and not 0 < float(max_features) <= 1:
            raise ModelError(f"head 'forest': max_features as a fraction must be in (0, 1], got {max_features}")
        if int(min_samples_leaf) < 1 or (max_depth is not None and int(max_depth) < 1):
            raise ModelError("head 'forest': min_samples_leaf and max_depth must be >= 1")
        if int(n_nodes) < 1 or int(depth) < 0:
            raise ModelError(f"head 'forest': n_nodes must be >= 1 and depth >= 0, got {n_nodes}, {depth}")
        self.kind, self.n_trees = kind, int(n_trees)
        self.max_features, self.min_samples_leaf, self.max_depth = max_features, int(min_samples_leaf), max_depth
        self.depth = int(depth)
        self._set_trees(*self._empty(self.n_trees, int(n_nodes)))

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return nn.Identity()

    @staticmethod
    def _empty(n_trees: int, n_nodes: int) -> tuple[np.ndarray, ...]:
        own = np.broadcast_to(np.arange(n_nodes, dtype=np.int32), (n_trees, n_nodes)).copy()
        return (
            np.zeros((n_trees, n_nodes), np.int32),
            np.full((n_trees, n_nodes), np.inf, np.float32),
            own,
            own.copy(),
            np.full((n_trees, n_nodes), 0.5, np.float32),
        )

    def _set_trees(self, feature: Any, threshold: Any, left: Any, right: Any, value: Any) -> None:
        arrays = {"feature": feature, "threshold": threshold, "left": left, "right": right, "value": value}
        for name, arr in arrays.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(arr)))

    def clip_vector(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` -> the ``(B, D')`` vector the trees split on."""
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        parts = [x.mean(dim=1)]
        if self.motion:
            parts.append(frame_differences(x).abs().mean(dim=1))
        return torch.cat(parts, dim=-1).float()

    def forward(self, x: Tensor) -> Tensor:
        v = self.clip_vector(x).t()  # (D', B)
        feature, left, right = self.feature.long(), self.left.long(), self.right.long()
        node = torch.zeros_like(v[:1], dtype=torch.long).expand(self.n_trees, -1)  # (trees, B): roots
        for _ in range(self.depth):
            xv = torch.gather(v, 0, torch.gather(feature, 1, node))
            go_left = xv <= torch.gather(self.threshold, 1, node)
            node = torch.where(go_left, torch.gather(left, 1, node), torch.gather(right, 1, node))
        p = torch.gather(self.value, 1, node).mean(dim=0).clamp(_P_EPS, 1 - _P_EPS)
        return torch.log(p) - torch.log1p(-p)

    def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int = 0, class_weight: Any = None) -> ForestHead:
        """Fit the trees on features ``(N, T, D)`` and labels ``(N,)`` (1 = fight); sets the buffers."""
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        with torch.no_grad():
            xv = self.clip_vector(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()
        ya = np.asarray(y).astype(np.int64).reshape(-1)
        if len(np.unique(ya)) != 2:
            raise ModelError(f"head 'forest': fitting needs both classes, got labels {np.unique(ya).tolist()}")
        cls = ExtraTreesClassifier if self.kind == "extra_trees" else RandomForestClassifier
        mf = self.max_features if isinstance(self.max_features, str) else float(self.max_features)
        forest = cls(
            n_estimators=self.n_trees,
            max_features=mf,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            class_weight=class_weight,
            random_state=seed,
            n_jobs=1,
        ).fit(xv, ya)
        self.load_forest(forest)
        return self

    def load_forest(self, forest: Any) -> None:
        """Copy a fitted scikit-learn tree ensemble (classes 0 / 1) into the buffers."""
        if list(getattr(forest, "classes_", [])) != [0, 1]:
            raise ModelError("head 'forest': the fitted forest must have classes [0, 1]")
        trees = [est.tree_ for est in forest.estimators_]
        n_nodes = max(t.node_count for t in trees)
        feature, threshold, left, right, value = self._empty(len(trees), n_nodes)
        for i, t in enumerate(trees):
            n = t.node_count
            leaf = t.children_left == -1
            idx = np.arange(n)
            feature[i, :n] = np.where(leaf, 0, t.feature)
            thr64 = np.where(leaf, np.inf, t.threshold)
            thr32 = thr64.astype(np.float32)
            up = thr32.astype(np.float64) > thr64
            thr32[up] = np.nextafter(thr32[up], np.float32(-np.inf))
            threshold[i, :n] = thr32
            left[i, :n] = np.where(leaf, idx, t.children_left)
            right[i, :n] = np.where(leaf, idx, t.children_right)
            counts = t.value[:, 0, :].astype(np.float64)
            value[i, :n] = counts[:, 1] / np.maximum(counts.sum(axis=1), 1e-12)
        self.n_trees = len(trees)
        self.depth = int(max(t.max_depth for t in trees))
        self._set_trees(feature, threshold, left, right, value)
        self._config["kwargs"].update({"n_trees": self.n_trees, "n_nodes": int(n_nodes), "depth": self.depth})
