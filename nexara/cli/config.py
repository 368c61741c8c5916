"""``nexara config validate|show``, and the config every other command loads from ``--config``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexara.config import NexaraConfig


def load_cfg(args: argparse.Namespace) -> NexaraConfig:
    """The config named by ``--config`` (default ``$NEXARA_CONFIG`` or ``./ray_config.yaml``)."""
    from nexara.config import load_config

    return load_config(args.config)


def cmd_config_validate(args: argparse.Namespace) -> int:
    from nexara.config import load_config

    path = args.path or args.config
    load_config(path)
    sys.stdout.write(f"config OK: {path or os.environ.get('NEXARA_CONFIG') or 'ray_config.yaml (default)'}\n")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from nexara.config import dump_config, load_config

    sys.stdout.write(dump_config(load_config(args.path or args.config)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("config", help="validate or show the configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    cv = csub.add_parser("validate", help="exit non-zero naming the bad key and line")
    cv.add_argument("path", nargs="?")
    cv.set_defaults(func=cmd_config_validate)
    cs = csub.add_parser("show", help="print the resolved config with defaults")
    cs.add_argument("path", nargs="?")
    cs.set_defaults(func=cmd_config_show)
