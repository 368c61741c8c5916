"""The head registry (shared :class:`~nexara.registry.Registry`) and building a head by name with
its arguments checked and remembered."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar

from nexara.errors import ModelError
from nexara.heads.base import TemporalHead
from nexara.registry import Registry

__all__ = ["HEADS", "create_head", "head_defaults", "list_heads", "register_head"]

# every head reads frame features (B, T, D); the kind is there for the shared registry
HEADS: Final[Registry[type[TemporalHead]]] = Registry("temporal head", default_kind="temporal")
_H = TypeVar("_H", bound="type[TemporalHead]")


def register_head(name: str) -> Callable[[_H], _H]:
    """Class decorator: register a :class:`TemporalHead` subclass under ``name``."""

    def deco(cls: _H) -> _H:
        HEADS.add(name, cls)
        cls.head_name = name
        return cls

    return deco


def list_heads() -> list[str]:
    """Registered head names, sorted."""
    return HEADS.names()


def _own_params(cls: type[TemporalHead]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "input_dim", "motion")}


def head_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments head ``name`` accepts, with their defaults."""
    return {k: p.default for k, p in _own_params(HEADS.get(name)).items()}


def create_head(name: str, input_dim: int, *, motion: bool = False, **kwargs: Any) -> TemporalHead:
    """Build the registered head ``name`` for ``input_dim``-dimensional frame features.

    ``kwargs`` are the head's own arguments (see :func:`head_defaults`). A ``kwargs=`` mapping is
    merged in too, so ``create_head(**head.config)`` rebuilds a head. Unknown names raise
    :class:`~nexara.errors.UnknownModelError`; unknown arguments raise :class:`~nexara.errors.ModelError`.
    """
    cls = HEADS.get(name)
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
