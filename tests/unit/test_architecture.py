"""Dependency rules from the design, checked on the source (no import side effects).

Layers, bottom to top: the core (``nexara``, every module but ``nexara.cli``; no Ray) -> ``cluster``
(starting or attaching to Ray) -> ``actors`` (live path) and ``training`` (batch path), which do not
import each other -> ``serve`` (the Serve app: core, cluster and actors; never training) -> ``nexara.cli``
(the command line: may import every layer, inside its commands). A module imports only from its own
layer or from the layers :data:`MAY_IMPORT` lists for it; nothing imports the CLI. Imports inside
functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PACKAGES = ("nexara", "cluster", "actors", "training", "serve")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "cluster": frozenset({"core", "cluster"}),
    "actors": frozenset({"core", "cluster", "actors"}),
    "training": frozenset({"core", "cluster", "training"}),
    "serve": frozenset({"core", "cluster", "actors", "serve"}),
    "cli": frozenset({"core", "cluster", "actors", "training", "serve", "cli"}),
}
NO_RAY = frozenset({"core"})  # the shared core runs without Ray (CLI predict, unit tests, ONNX export)


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name; None for third-party and standard-library modules."""
    top = module.split(".")[0]
    if top == "nexara":
        return "cli" if module == "nexara.cli" or module.startswith("nexara.cli.") else "core"
    return top if top in PACKAGES else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module a file imports (relative imports resolved), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.add(module)
            # `from nexara import cli` imports the module nexara.cli, of another layer than nexara
            out.update(f"{module}.{a.name}" for a in node.names if layer_of(f"{module}.{a.name}") != layer_of(module))
    return out


def layer_violations(root: Path) -> dict[str, list[str]]:
    """``file -> imports that break the layering`` for every package under ``root``."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            own = layer_of(module_name(path, root))
            assert own is not None
            bad = []
            for module in sorted(imported_modules(path, root)):
                target = layer_of(module)
                if target is not None and target not in MAY_IMPORT[own]:
                    bad.append(f"{module} ({own} -> {target})")
                elif module.split(".")[0] == "ray" and own in NO_RAY:
                    bad.append(f"{module} ({own} imports no Ray)")
            if bad:
                found[str(path.relative_to(root))] = bad
    return found


def test_every_package_imports_only_its_own_and_lower_layers() -> None:
    violations = layer_violations(REPO)
    assert not violations, violations


def test_the_checker_flags_upward_imports(tmp_path: Path) -> None:
    files = {
        "nexara/__init__.py": "",
        "nexara/motion.py": "def f():\n    from nexara.cli import main  # lazy, still upward\n",
        "nexara/media/__init__.py": "",
        "nexara/media/decode.py": "import ray\nfrom ..cli.app import main\n",
        "nexara/cli/__init__.py": "from serve.builder import build_app\nfrom training.pipeline import run_train\n",
        "nexara/heads.py": "from nexara import cli\n",
        "cluster/runtime.py": "import ray\nfrom actors.stream import x\n",
        "serve/watch.py": "from training.pipeline import run_train\nfrom actors.grid import g\n",
        "actors/stream.py": "from training import loop\n",
        "training/cv.py": "import ray\nfrom cluster.runtime import init_ray\nfrom nexara.config import C\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    assert layer_violations(tmp_path) == {
        "nexara/motion.py": ["nexara.cli (core -> cli)"],
        "nexara/media/decode.py": ["nexara.cli.app (core -> cli)", "ray (core imports no Ray)"],
        "nexara/heads.py": ["nexara.cli (core -> cli)"],
        "cluster/runtime.py": ["actors.stream (cluster -> actors)"],
        "serve/watch.py": ["training.pipeline (serve -> training)"],
        "actors/stream.py": ["training (actors -> training)"],
    }


def test_ray_actors_only_in_actor_files() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "actors").rglob("*.py")
        if "ray" in {m.split(".")[0] for m in imported_modules(p, REPO)} and not p.name.endswith("_actor.py")
    ]
    assert not offenders, offenders
