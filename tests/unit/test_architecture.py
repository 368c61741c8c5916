"""Dependency rules from the design, checked on the source (no import side effects)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_shared_core_imports_no_ray_and_no_runtime_package() -> None:
    offenders = {}
    for path in (REPO / "nexara").rglob("*.py"):
        if path.name == "cli.py":  # the command line dispatches into the runtimes, lazily
            continue
        bad = _imports(path) & {"ray", "actors", "serve", "training"}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, offenders


def test_serve_never_imports_training() -> None:
    offenders = {
        str(p.relative_to(REPO)): "training" for p in (REPO / "serve").rglob("*.py") if "training" in _imports(p)
    }
    assert not offenders, offenders


def test_ray_actors_only_in_actor_files() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "actors").rglob("*.py")
        if "ray" in _imports(p) and not p.name.endswith("_actor.py")
    ]
    assert not offenders, offenders
