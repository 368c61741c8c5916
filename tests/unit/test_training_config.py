"""The member schema validates head names and arguments from the heads' source, without importing them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nexara.training_config import MemberConfig, head_arguments


def test_head_arguments_read_from_source_match_the_registry() -> None:
    from nexara.heads import head_defaults, list_heads

    assert head_arguments() == {name: tuple(head_defaults(name)) for name in list_heads()}


def test_unknown_head_and_unknown_argument_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown head 'nope'; registered heads: attention, "):
        MemberConfig(name="m", head="nope")
    with pytest.raises(ValidationError, match="head 'stats' does not accept width; accepted: hidden, dropout"):
        MemberConfig(name="m", head="stats", head_kwargs={"width": 3})
    assert MemberConfig(name="m", head="forest", head_kwargs={"n_trees": 10}).head_kwargs == {"n_trees": 10}
