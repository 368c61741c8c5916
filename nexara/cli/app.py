"""The parser (one ``register`` per command module, in the order ``nexara --help`` lists them) and
:func:`main`: every NexaraError ends as one readable line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from nexara.cli import config, dataset, grafana, live, predict, probe, train, users, wall
from nexara.errors import NexaraError

_COMMAND_MODULES = (config, probe, dataset, train, predict, live, wall, grafana, users)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nexara", description="NexaraVision: violence detection on Ray")
    p.add_argument("--config", help="ray_config.yaml to use (default: $NEXARA_CONFIG or ./ray_config.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for module in _COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        return int(args.func(args))
    except NexaraError as exc:
        sys.stderr.write(f"nexara: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("nexara: interrupted\n")
        return 130
