"""Every registered temporal head: shapes, rebuild from config, and that it learns a separable set."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
@pytest.mark.parametrize("name", HEADS)
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
