"""One small name -> builder registry, shared by the backbones and the temporal heads.

A :class:`Registry` maps names to whatever builds the thing (a builder entry for backbones, a class for
heads) and tags each entry with a ``kind``: backbones are ``"frame"`` (uint8 frames ``(N, H, W, 3)``
in, one feature vector per frame out) today; a ``"clip"`` backbone (``(T, H, W, 3)`` in, one vector
per clip) can be registered beside them without another registry. An unknown name raises
:class:`~nexara.errors.UnknownModelError` listing every registered name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from nexara.errors import UnknownModelError

__all__ = ["Registered", "Registry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Registered(Generic[T]):
    """One entry: its name, what builds it, and the kind of input it takes."""

    name: str
    builder: T
    kind: str


class Registry(Generic[T]):
    """Names -> builders, in registration order; ``what`` names the things in error messages
    (``"backbone"`` gives "unknown backbone 'x'; registered backbones: a, b")."""

    __slots__ = ("_entries", "default_kind", "what")

    def __init__(self, what: str, *, default_kind: str) -> None:
        self.what = what
        self.default_kind = default_kind
        self._entries: dict[str, Registered[T]] = {}

    def add(self, name: str, builder: T, *, kind: str | None = None) -> T:
        """Register ``builder`` under ``name``; a second registration of a name is an error (two
        modules claiming one name is a bug, not an override)."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = Registered(name, builder, kind or self.default_kind)
        return builder

    def entry(self, name: str) -> Registered[T]:
        """The entry of ``name``, or :class:`UnknownModelError` listing the registered names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownModelError(f"unknown {self.what} {name!r}; registered {self.what}s: {known}") from None

    def get(self, name: str) -> T:
        """The builder of ``name`` (see :meth:`entry`)."""
        return self.entry(name).builder

    def names(self, kind: str | None = None) -> list[str]:
        """Registered names, sorted; only those of ``kind`` when given."""
        return sorted(n for n, e in self._entries.items() if kind is None or e.kind == kind)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
