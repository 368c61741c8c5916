"""Temporal heads (being split into one module per family)."""

from nexara.heads.sequence import *  # noqa: F403
from nexara.heads.sequence import __all__  # noqa: F401
