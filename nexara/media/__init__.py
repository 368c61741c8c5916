"""Video input on PyAV (being split into one module per concern)."""

from nexara.media.sampling import *  # noqa: F403
from nexara.media.sampling import __all__  # noqa: F401
