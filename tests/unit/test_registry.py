"""The one name -> builder registry shared by backbones and heads: kinds, unknown names, duplicates."""

from __future__ import annotations

import pytest

from nexara.backbones.factory import BACKBONES
from nexara.errors import UnknownModelError
from nexara.heads.factory import HEADS
from nexara.registry import Registry

pytestmark = pytest.mark.unit


def test_kinds_filter_names() -> None:
    reg: Registry[int] = Registry("widget", default_kind="frame")
    reg.add("b", 2)
    reg.add("a", 1)
    reg.add("c", 3, kind="clip")
    assert reg.names() == ["a", "b", "c"]
    assert reg.names("frame") == ["a", "b"] and reg.names("clip") == ["c"]
    assert reg.entry("c").kind == "clip" and reg.get("a") == 1
    assert "a" in reg and "z" not in reg and len(reg) == 3


def test_unknown_name_lists_every_registered_name() -> None:
    reg: Registry[int] = Registry("widget", default_kind="frame")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    with pytest.raises(UnknownModelError, match=r"unknown widget 'gamma'; registered widgets: alpha, beta"):
        reg.get("gamma")


def test_a_name_is_registered_once() -> None:
    reg: Registry[int] = Registry("widget", default_kind="frame")
    reg.add("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", 2)


def test_backbones_and_heads_share_the_registry() -> None:
    assert isinstance(BACKBONES, Registry) and isinstance(HEADS, Registry)
    # frame and clip backbones share the one registry, told apart by kind
    assert sorted(BACKBONES.names("frame") + BACKBONES.names("clip")) == BACKBONES.names()
    assert BACKBONES.names("clip") == ["i3d_kinetics400"]
    assert "efficientnet_lite0" in BACKBONES and "forest" in HEADS
