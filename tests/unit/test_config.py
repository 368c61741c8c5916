from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexara.config import NexaraConfig, dump_config, expand_env, load_config, parse_config
from nexara.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_matches_defaults_where_unset() -> None:
    cfg = load_config(REPO / "ray_config.yaml")
    assert cfg.model.backbone == "efficientnet_lite0"
    assert cfg.media.frames_per_clip == 16
    assert cfg.features.decode_num_cpus != cfg.features.model_num_cpus


def test_empty_config_gives_defaults() -> None:
    assert parse_config("") == NexaraConfig()


def test_unknown_key_named_with_line() -> None:
    text = "media:\n  frames_per_clip: 8\n  framez: 3\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, source="x.yaml")
    assert "media.framez (line 3)" in str(e.value)
    assert "unknown key" in str(e.value)


def test_out_of_bounds_value_named_with_line() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("model:\n  backbone: x\nfeatures:\n  batch_size: 0\n")
    assert "features.batch_size (line 4)" in str(e.value)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        parse_config("features:\n  decode_num_cpus: 0.5\n  model_num_cpus: 0.5\n")
    with pytest.raises(ConfigError, match=r"must be 1\.0"):
        parse_config("dataset:\n  split: {train: 0.5, val: 0.1, test: 0.1}\n")


def test_bad_yaml_and_wrong_top_level() -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        parse_config("media: [1,\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- 1\n- 2\n")


def test_dump_round_trips() -> None:
    cfg = parse_config("media:\n  resize: letterbox\n")
    assert parse_config(dump_config(cfg)) == cfg


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXARA_TEST_URL", "http://example")
    assert expand_env("${NEXARA_TEST_URL}/hook") == "http://example/hook"
    monkeypatch.delenv("NEXARA_TEST_URL")
    with pytest.raises(ConfigError, match="NEXARA_TEST_URL"):
        expand_env("${NEXARA_TEST_URL}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexara.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ray:\n  address: local\n  nmu_cpus: 2\n")
    r = _cli("config", "validate", str(bad))
    assert r.returncode == 2
    assert "ray.nmu_cpus (line 3): unknown key" in r.stderr
    assert "Traceback" not in r.stderr
    ok = _cli("config", "validate", str(REPO / "ray_config.yaml"))
    assert ok.returncode == 0, ok.stderr
    show = _cli("config", "show")
    assert show.returncode == 0 and "frames_per_clip: 16" in show.stdout
    missing = _cli("config", "validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr
