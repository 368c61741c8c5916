"""Fill the ``${NEXARA_...}`` placeholders of a ``ray up`` cluster config from the environment.

Ray reads a cluster YAML as it is (no environment variables), and the machines, SSH user, key and port
differ per site, so the configs in ``cluster/`` name them as ``${NEXARA_NAME}`` or
``${NEXARA_NAME:-default}`` and are rendered before ``ray up``::

    NEXARA_HEAD_IP=10.0.0.5 python -m cluster.render cluster/local.yaml > runs/local.yaml
    ray up -y runs/local.yaml

Only ``NEXARA_`` names are placeholders: ``$RAY_HEAD_IP`` and other shell variables in the commands are
left for the node's shell. A placeholder with no value and no default is an error naming it and the file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

_PLACEHOLDER = re.compile(r"\$\{(NEXARA_[A-Z0-9_]+)(?::-([^}]*))?\}")


class MissingVariableError(ValueError):
    """A placeholder without a value in the environment and without a default."""


def placeholders(text: str) -> dict[str, str | None]:
    """Every ``NEXARA_`` placeholder in ``text`` with its default (None where it has none)."""
    found: dict[str, str | None] = {}
    for m in _PLACEHOLDER.finditer(text):
        found.setdefault(m.group(1), m.group(2))
    return found


def render(text: str, env: Mapping[str, str], *, source: str = "<config>") -> str:
    """``text`` with every ``${NEXARA_X}`` / ``${NEXARA_X:-default}`` replaced by ``env[NEXARA_X]`` (an
    empty value counts as unset, as in the shell) or its default."""
    missing: list[str] = []

    def value(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    out = _PLACEHOLDER.sub(value, text)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise MissingVariableError(f"{source}: set {names} (no default in the file)")
    return out


def render_file(path: Path, env: Mapping[str, str] | None = None) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"no cluster config at {path}")
    return render(path.read_text(encoding="utf-8"), os.environ if env is None else env, source=str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.render", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path, help="cluster YAML with ${NEXARA_...} placeholders")
    ap.add_argument("-o", "--out", type=Path, help="file to write (default: standard output)")
    args = ap.parse_args(argv)
    try:
        text = render_file(args.config)
    except (MissingVariableError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
