"""Temporal heads: small models that turn a window of per-frame CNN features into one fight logit.

A registry in the style of timm: :func:`create_head` builds a head by name, :func:`list_heads` names them.
Every head maps ``(B, T, D)`` float features to ``(B,)`` logits (label 1 = fight) and remembers its
constructor arguments in :attr:`TemporalHead.config`, with defaults filled in, so a saved member is
rebuilt exactly with ``create_head(**head.config)`` and its state_dict.

``motion=True`` adds a motion stream computed inside the module: frame-to-frame feature differences
``x[:, 1:] - x[:, :-1]`` (zero for the first frame, so the length stays ``T``), layer-normalised on
their own (differences are an order of magnitude smaller than the features) and concatenated with the
layer-normalised appearance features. Fights are motion; a static scene has near-zero differences.

Sizes are deliberately moderate (hidden 64-128): the training sets are a few hundred clips.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nexara.errors import ModelError, UnknownModelError

__all__ = [
    "FrameInput",
    "TemporalHead",
    "create_head",
    "frame_differences",
    "head_defaults",
    "list_heads",
    "register_head",
]

_REGISTRY: dict[str, type[TemporalHead]] = {}
_H = TypeVar("_H", bound="type[TemporalHead]")


def register_head(name: str) -> Callable[[_H], _H]:
    """Class decorator: register a :class:`TemporalHead` subclass under ``name``."""

    def deco(cls: _H) -> _H:
        if name in _REGISTRY:
            raise ValueError(f"temporal head {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.head_name = name
        return cls

    return deco


def list_heads() -> list[str]:
    """Registered head names, sorted."""
    return sorted(_REGISTRY)


def _head_class(name: str) -> type[TemporalHead]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown temporal head {name!r}; registered heads: {', '.join(list_heads())}"
        ) from None


def _own_params(cls: type[TemporalHead]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "input_dim", "motion")}


def head_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments head ``name`` accepts, with their defaults."""
    return {k: p.default for k, p in _own_params(_head_class(name)).items()}


def create_head(name: str, input_dim: int, *, motion: bool = False, **kwargs: Any) -> TemporalHead:
    """Build the registered head ``name`` for ``input_dim``-dimensional frame features.

    ``kwargs`` are the head's own arguments (see :func:`head_defaults`). A ``kwargs=`` mapping is
    merged in too, so ``create_head(**head.config)`` rebuilds a head. Unknown names raise
    :class:`~nexara.errors.UnknownModelError`; unknown arguments raise :class:`~nexara.errors.ModelError`.
    """
    cls = _head_class(name)
    nested = kwargs.pop("kwargs", None)
    if nested is not None:
        if not isinstance(nested, dict):
            raise ModelError(f"head {name!r}: kwargs must be a mapping, got {type(nested).__name__}")
        overlap = set(nested) & set(kwargs)
        if overlap:
            raise ModelError(f"head {name!r}: arguments given twice: {', '.join(sorted(overlap))}")
        kwargs = {**nested, **kwargs}
    accepted = _own_params(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelError(f"head {name!r} got unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if int(input_dim) < 1:
        raise ModelError(f"head {name!r}: input_dim must be >= 1, got {input_dim}")
    resolved = {k: kwargs.get(k, p.default) for k, p in accepted.items()}
    head = cls(int(input_dim), motion=bool(motion), **resolved)
    head._config = {
        "name": name,
        "input_dim": int(input_dim),
        "motion": bool(motion),
        "kwargs": copy.deepcopy(resolved),
    }
    return head


class FrameInput(nn.Module):
    """Input stage shared by every head: per-frame LayerNorm of the features, plus the motion stream.

    Output: ``(B, T, out_dim)`` with ``out_dim = D`` or ``2 * D`` when ``motion`` is on.
    """

    def __init__(self, input_dim: int, motion: bool) -> None:
        super().__init__()
        self.motion = motion
        self.norm = nn.LayerNorm(input_dim)
        self.motion_norm = nn.LayerNorm(input_dim) if motion else None
        self.out_dim = input_dim * (2 if motion else 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        app = self.norm(x)
        if self.motion_norm is None:
            return app
        return torch.cat([app, self.motion_norm(frame_differences(x))], dim=-1)


def frame_differences(x: Tensor) -> Tensor:
    """``x[:, t] - x[:, t - 1]``, zero for the first frame: ``(B, T, D)`` -> ``(B, T, D)``."""
    return F.pad(x[:, 1:] - x[:, :-1], (0, 0, 1, 0))


class TemporalHead(nn.Module):
    """Base class: ``forward((B, T, D) float) -> (B,) logits``; ``config`` rebuilds it."""

    head_name: str = ""
    #: True for heads fitted in one call (``fit(x, y, seed=..., class_weight=...)``) instead of by gradient steps.
    gradient_free: bool = False
    _config: dict[str, Any]

    def __init__(self, input_dim: int, *, motion: bool = False) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.motion = motion
        self.frames = self._frame_input(input_dim, motion)
        self.frame_dim = input_dim * (2 if motion else 1)  # width of what self.frames returns
        self._config = {"name": self.head_name, "input_dim": input_dim, "motion": motion, "kwargs": {}}

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return FrameInput(input_dim, motion)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name", "input_dim", "motion", "kwargs"}``: ``create_head(**config)`` rebuilds this head."""
        return copy.deepcopy(self._config)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.frames(x)).squeeze(-1)

    def score(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``(B, T, frame_dim)`` -> ``(B, 1)`` logits."""
        raise NotImplementedError


class AttentionPool(nn.Module):
    """Additive attention over time: ``(B, T, H)`` -> ``(B, H)``."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))

    def forward(self, h: Tensor) -> Tensor:
        w = torch.softmax(self.score(h).squeeze(-1).float(), dim=1).to(h.dtype)
        return torch.einsum("bt,bth->bh", w, h)


def _projection(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout * 0.5), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout))


class _Recurrent(TemporalHead):
    rnn_cls: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        proj_dim: int = 128,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        self.proj = _projection(self.frame_dim, proj_dim, dropout)
        self.rnn = self.rnn_cls(
            proj_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        # last state of each direction + mean over time: the mean keeps gradients flowing to every frame
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        seq, _ = self.rnn(self.proj(h))
        half = seq.shape[-1] // 2
        last = torch.cat([seq[:, -1, :half], seq[:, 0, half:]], dim=-1)
        return self.out(torch.cat([last, seq.mean(dim=1)], dim=-1))


@register_head("bilstm")
class BiLSTMHead(_Recurrent):
    """Projection -> bidirectional LSTM -> last states + mean over time -> logit."""

    rnn_cls = nn.LSTM


@register_head("bigru")
class BiGRUHead(_Recurrent):
    """Projection -> bidirectional GRU -> last states + mean over time -> logit."""

    rnn_cls = nn.GRU


@register_head("attention")
class AttentionHead(TemporalHead):
    """Projection with a learned position embedding -> attention pooling over time -> small MLP."""

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 128,
        attn_dim: int = 64,
        max_frames: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        self.proj = _projection(self.frame_dim, hidden, dropout)
        self.pos = nn.Parameter(torch.zeros(max_frames, hidden))
        self.pool = AttentionPool(hidden, attn_dim)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        t = h.shape[1]
        if t > self.pos.shape[0]:
            raise ValueError(f"attention head built for at most {self.pos.shape[0]} frames, got {t}")
        return self.out(self.pool(self.proj(h) + self.pos[:t]))


@register_head("hybrid")
class HybridHead(TemporalHead):
    """Feature compression (Linear -> LayerNorm -> GELU) -> residual BiLSTM stack -> attention pooling.

    Each BiLSTM layer has ``hidden // 2`` units per direction, so its output adds onto its input.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 128,
        num_layers: int = 2,
        attn_dim: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        if hidden % 2:
            raise ModelError(f"hybrid head: hidden must be even, got {hidden}")
        self.compress = nn.Sequential(
            nn.Dropout(dropout * 0.5),
            nn.Linear(self.frame_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.layers = nn.ModuleList(
            nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.pool = AttentionPool(hidden, attn_dim)
        self.out = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden // 2, 1)
        )

    def score(self, h: Tensor) -> Tensor:
        z = self.compress(h)
        for lstm, norm in zip(self.layers, self.norms, strict=True):
            y, _ = lstm(z)
            z = norm(z + self.drop(y))
        return self.out(self.pool(z))


@register_head("conv1d")
class Conv1DHead(TemporalHead):
    """Projection -> residual dilated temporal convolutions -> mean + max pooling over time -> logit."""

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 96,
        num_layers: int = 3,
        kernel_size: int = 3,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        if kernel_size % 2 == 0:
            raise ModelError(f"conv1d head: kernel_size must be odd, got {kernel_size}")
        self.proj = _projection(self.frame_dim, hidden, dropout)
        self.blocks = nn.ModuleList()
        for i in range(num_layers):
            dilation = 2**i
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(hidden, hidden, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation),
                    nn.GroupNorm(1, hidden),
                    nn.GELU(),
                    nn.Dropout(dropout),
                )
            )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        z = self.proj(h).transpose(1, 2)  # (B, H, T)
        for block in self.blocks:
            z = z + block(z)
        return self.out(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=-1))


@register_head("stats")
class StatsHead(TemporalHead):
    """Mean, std and mean |temporal difference| of each raw feature -> LayerNorm -> small MLP.

    The strong linear-probe baseline as a head: order-free except for the difference statistic. The
    statistics are taken on the raw features (the LayerNorm after them is the input normalisation);
    with ``motion`` the same three statistics of the frame differences are appended.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        d = 3 * input_dim * (2 if motion else 1)
        self.mlp = nn.Sequential(
            nn.LayerNorm(d),
            nn.Dropout(dropout),
            nn.Linear(d, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        parts = _stats(x)
        if self.motion:
            parts += _stats(frame_differences(x)[:, 1:] if x.shape[1] > 1 else torch.zeros_like(x))
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)


def _stats(h: Tensor) -> list[Tensor]:
    var, mean = torch.var_mean(h, dim=1, unbiased=False)
    # sqrt(var + eps): torch.std has an infinite gradient on constant inputs
    std = torch.sqrt(var + 1e-6)
    mad = (h[:, 1:] - h[:, :-1]).abs().mean(dim=1) if h.shape[1] > 1 else torch.zeros_like(mean)
    return [mean, std, mad]


@register_head("probe")
class ProbeHead(TemporalHead):
    """A (regularised) linear probe on clip-level vectors, e.g. the optical-flow motion statistics.

    Input ``(B, T, D)`` is pooled over T into mean and std (clip vectors arrive as T = 1, std 0; with
    ``motion`` the mean |frame difference| is appended), standardised with statistics learnt during
    training (a BatchNorm without affine parameters, cumulative averages), then a linear layer —
    logistic regression on standardised features when ``hidden`` is 0, a one-hidden-layer MLP otherwise.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        d = input_dim * (3 if motion else 2)
        self.standardise = nn.BatchNorm1d(d, affine=False, momentum=None)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden > 0:
            layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)]
        else:
            layers += [nn.Linear(d, 1)]
        self.out = nn.Sequential(*layers)

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        parts = [x.mean(dim=1), x.std(dim=1, unbiased=False)]
        if self.motion:
            parts.append(frame_differences(x).abs().mean(dim=1))
        z = torch.cat(parts, dim=-1)
        if self.training and z.shape[0] == 1:
            # BatchNorm cannot take a batch of one in training: use the running statistics
            z = F.batch_norm(z, self.standardise.running_mean, self.standardise.running_var, training=False)
        else:
            z = self.standardise(z)
        return self.out(z).squeeze(-1)


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
