"""Motion stream (being split into one module per concern)."""

from nexara.motion.stats import *  # noqa: F403
from nexara.motion.stats import __all__  # noqa: F401
from nexara.motion.stats import _CHUNK  # noqa: F401
