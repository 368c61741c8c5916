"""The command tree of `nexara` (one module per command group under nexara/cli) and its error contract."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nexara.cli import build_parser, main

COMMANDS = {
    "config": ["validate", "show"],
    "probe": [],
    "backbones": [],
    "dataset": ["scan", "from-reviews"],
    "features": [],
    "evaluate": [],
    "train": [],
    "finetune": [],
    "predict": [],
    "serve": [],
    "watch": [],
    "grid": ["detect"],
    "demo-wall": [],
    "grafana": ["dashboard"],
    "users": ["add", "list"],
}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_command_tree_in_help_order() -> None:
    top = _subcommands(build_parser())
    assert list(top) == list(COMMANDS)
    assert {name: list(_subcommands(p)) for name, p in top.items()} == COMMANDS
    for name, parser in top.items():
        leaves = _subcommands(parser).values() or [parser]
        assert all(callable(leaf.get_default("func")) for leaf in leaves), name


def test_a_nexara_error_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "scan", "--out", str(tmp_path / "m.parquet")]) == 2
    assert capsys.readouterr().err == "nexara: error: dataset scan needs DIR or --csv FILE\n"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
