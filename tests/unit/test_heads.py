"""Every registered temporal head: shapes, rebuild from config, and that it learns a separable set."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nexara.errors import ModelError, UnknownModelError
from nexara.heads import TemporalHead, create_head, head_defaults, list_heads

pytestmark = pytest.mark.unit

HEADS = list_heads()
T, D = 16, 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny models: thread hand-off costs more than it saves, and the CI box is shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _separable(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1: a static scene plus a temporal oscillation on a few features; class 0: the static scene."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()
    scene = torch.rand(n, 1, D, generator=g) * 2
    x = scene.expand(n, T, D) + 0.05 * torch.randn(n, T, D, generator=g)
    t = torch.arange(T, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=g) * 6.28
    wave = torch.sin(1.3 * t[None, :] + phase)  # (n, T)
    x = x.clone()
    x[:, :, :8] += (y[:, None, None] * 1.5) * wave[:, :, None]
    return x, y


def test_registry_has_the_design_heads() -> None:
    assert set(HEADS) >= {"bilstm", "bigru", "attention", "hybrid", "conv1d", "stats"}


def test_unknown_head_lists_names() -> None:
    with pytest.raises(UnknownModelError) as e:
        create_head("transformer9000", 8)
    for name in HEADS:
        assert name in str(e.value)


def test_unknown_argument_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="hidden_size"):
        create_head("bilstm", 8, hidden_size=3)


@pytest.mark.parametrize("motion", [False, True], ids=["appearance", "motion"])
@pytest.mark.parametrize("name", HEADS)
def test_shape_finite_and_rebuild(name: str, motion: bool) -> None:
    torch.manual_seed(0)
    head = create_head(name, D, motion=motion)
    assert isinstance(head, TemporalHead)
    x = torch.randn(5, T, D)
    head.eval()
    out = head(x)
    assert out.shape == (5,)
    assert torch.isfinite(out).all()

    cfg = head.config
    assert cfg == {"name": name, "input_dim": D, "motion": motion, "kwargs": head_defaults(name)}
    json.dumps(cfg)  # goes into a model manifest
    torch.manual_seed(123)  # different init: the state_dict must carry everything
    rebuilt = create_head(**json.loads(json.dumps(cfg)))
    rebuilt.load_state_dict(head.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), out)
    assert rebuilt.config == cfg

    # a single frame and a batch of one still work
    assert head(torch.randn(1, 1, D)).shape == (1,)


@pytest.mark.parametrize("motion", [False, True], ids=["appearance", "motion"])
@pytest.mark.parametrize("name", [h for h in HEADS if not create_head(h, 4).gradient_free])
def test_loss_falls_on_separable_set(name: str, motion: bool) -> None:
    torch.manual_seed(0)
    x, y = _separable()
    head = create_head(name, D, motion=motion)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)

    def eval_loss() -> float:
        head.eval()
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(head(x), y))

    initial = eval_loss()
    for step in range(24):
        head.train()
        idx = torch.randperm(len(y))[:64] if step % 2 else torch.arange(len(y))
        loss = F.binary_cross_entropy_with_logits(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = eval_loss()
    assert final < 0.7 * initial, (name, motion, initial, final)


def test_motion_stream_sees_differences_only() -> None:
    """With motion on, the second half of the input stage is the normalised frame difference."""
    head = create_head("attention", 4, motion=True)
    x = torch.randn(2, 5, 4)
    h = head.frames(x)
    assert h.shape == (2, 5, 8)
    still = head.frames(x[:, :1].expand(2, 5, 4))
    assert torch.allclose(still[..., 4:], still[:, :1, 4:].expand(2, 5, 4))  # all-zero differences


# --- gradient-free heads (trees) ------------------------------------------------------------------


def test_gradient_free_heads_are_registered() -> None:
    free = [h for h in HEADS if create_head(h, 4).gradient_free]
    assert free == ["forest"]
    assert not list(create_head("forest", 4).parameters())  # nothing for an optimiser


@pytest.mark.parametrize("name", [h for h in HEADS if create_head(h, 4).gradient_free])
def test_gradient_free_head_fits_separable_set(name: str) -> None:
    x, y = _separable()
    head = create_head(name, D, motion=True).fit(x.numpy(), y.numpy(), seed=0)
    head.eval()
    xt, yt = _separable(seed=1)  # fresh clips
    with torch.no_grad():
        initial = float(F.binary_cross_entropy_with_logits(create_head(name, D, motion=True)(xt), yt))
        loss = float(F.binary_cross_entropy_with_logits(head(xt), yt))
        acc = float(((head(xt) > 0).float() == yt).float().mean())
    assert loss < 0.7 * initial and acc > 0.9, (loss, initial, acc)


@pytest.mark.parametrize("kind", ["extra_trees", "random_forest"])
def test_forest_matches_scikit_learn_and_rebuilds(kind: str) -> None:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 12)).astype(np.float32)
    x[:, 3] = np.round(x[:, 3], 1)  # repeated values: thresholds fall between neighbouring float32 values
    y = ((x[:, 0] + 0.5 * x[:, 3] ** 2 + 0.3 * rng.normal(size=120)) > 0.4).astype(np.int64)
    head = create_head("forest", 12, kind=kind, n_trees=60, min_samples_leaf=1)
    head.fit(x[:, None, :], y, seed=3)
    cls = ExtraTreesClassifier if kind == "extra_trees" else RandomForestClassifier
    ref = cls(n_estimators=60, max_features="sqrt", min_samples_leaf=1, random_state=3, n_jobs=1).fit(x, y)
    # the training clips (values exactly on split neighbours) and new ones
    probe = np.concatenate([x, rng.normal(size=(50, 12)).astype(np.float32)])
    head.eval()
    with torch.no_grad():
        p = torch.sigmoid(head(torch.from_numpy(probe[:, None, :]))).double().numpy()
    want = np.clip(ref.predict_proba(probe)[:, 1], 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(p, want, atol=1e-6)

    cfg = head.config
    assert cfg["kwargs"]["n_nodes"] > 1 and cfg["kwargs"]["depth"] >= 1
    rebuilt = create_head(**json.loads(json.dumps(cfg)))
    rebuilt.load_state_dict(head.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt(torch.from_numpy(probe[:, None, :])), head(torch.from_numpy(probe[:, None, :]))
        )


def test_forest_rejects_bad_arguments_and_one_class() -> None:
    with pytest.raises(ModelError, match="kind must be one of"):
        create_head("forest", 4, kind="boosted")
    with pytest.raises(ModelError, match="max_features"):
        create_head("forest", 4, max_features=1.5)
    with pytest.raises(ModelError, match="both classes"):
        create_head("forest", 4).fit(np.zeros((6, 1, 4), np.float32), np.ones(6))
