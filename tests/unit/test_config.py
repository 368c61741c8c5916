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


# --- one truth: what the live path would refuse, `nexara config validate` refuses first -----------------

_CAMERA = "cameras:\n  - id: cam\n    url: {url}\n"


@pytest.mark.parametrize(
    ("extra", "url", "key"),
    [
        ("    loop: true\n", "rtsp://10.0.0.5/stream", "cameras.0.loop (line 4)"),
        ("    loop: true\n    format: x11grab\n", "':0.0'", "cameras.0.loop (line 4)"),
        ("    backoff_initial_s: 5\n    backoff_max_s: 1\n", "a.mp4", "cameras.0.backoff_max_s (line 5)"),
        ("", "'   '", "cameras.0.url (line 3)"),
        ("    format: ''\n", "a.mp4", "cameras.0.format (line 4)"),
        ("    grid: {rows: 2, cols: 2, cell_ids: [a, b]}\n", "a.mp4", "cameras.0.grid.cell_ids (line 4)"),
        ("    grid:\n      boxes: [[0, 0, 0, 10]]\n", "a.mp4", "cameras.0.grid.boxes.0 (line 5)"),
        ("    grid:\n      cell_ids: ['bad id']\n", "a.mp4", "cameras.0.grid.cell_ids.0 (line 5)"),
        ("    confirmation:\n      k: 5\n", "a.mp4", "cameras.0.confirmation.k (line 5)"),
        ("    confirmation:\n      tiers: {}\n", "a.mp4", "cameras.0.confirmation.tiers (line 5)"),
        ("    windows:\n      alert_stride_s: 2\n", "a.mp4", "cameras.0.windows.alert_stride_s (line 5)"),
        ("    windows:\n      stride: 2\n", "a.mp4", "cameras.0.windows.stride (line 5)"),
    ],
)
def test_validate_refuses_a_camera_the_actor_would_refuse(extra: str, url: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_CAMERA.format(url=url) + extra, source="cams.yaml")
    assert key in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("confirmation:\n  enter_threshold: 0.5\n  exit_threshold: 0.5\n", "confirmation.exit_threshold (line 3)"),
        ("confirmation:\n  tiers: {HIGH: 1.5}\n", "confirmation.tiers.HIGH (line 2)"),
        ("windows:\n  stride_s: 0.4\n", "windows.alert_stride_s (line 1)"),  # unset key: its section's line
    ],
)
def test_live_section_rules_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert key in str(e.value), str(e.value)


def test_resolved_camera_merges_overrides_and_is_what_the_actor_reads() -> None:
    from actors.sources import SourceConfig

    cfg = parse_config(
        "media: {read_timeout_s: 3}\nconfirmation: {k: 2, n: 3}\n"
        "cameras:\n  - id: cam\n    url: rtsp://h/s\n    confirmation: {k: 3, n: 5}\n    windows: {stride_s: 2}\n"
        "  - id: other\n    url: b.mp4\n"
    )
    cam = cfg.resolve_camera("cam")
    assert (cam.confirmation.k, cam.confirmation.n, cam.windows.stride_s) == (3, 5, 2.0)
    assert cam.confirmation.tiers == {"HIGH": 0.85, "MEDIUM": 0.65, "LOW": 0.0}
    other = cfg.resolve_camera("other")
    assert (other.confirmation.k, other.confirmation.n, other.windows.stride_s) == (2, 3, 1.0)
    source = SourceConfig.from_camera(cam)
    assert source.url == "rtsp://h/s" and source.read_timeout_s == 3.0 and source.should_reconnect
    with pytest.raises(Exception, match="frozen"):
        cam.windows.stride_s = 5.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="no camera"):
        cfg.resolve_camera("nope")


def test_camera_added_at_run_time_is_checked_like_a_configured_one() -> None:
    from nexara.config import CameraConfig

    cam = CameraConfig(id="late", url="a.mp4", confirmation={"k": 4})
    with pytest.raises(ConfigError, match=r"camera late: confirmation\.k: k \(4\) must be <= n \(3\)"):
        NexaraConfig().resolve_camera(cam)
