"""The `ray up` configs in cluster/ render from the environment and pass Ray's own checks (the
prepare_config + validate_config that `ray up` runs before it touches a machine). No cloud account or SSH
server here: tests/e2e/test_ray_up.py brings local.yaml up for real (slow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.render import MissingVariableError, main, placeholders, render, render_file

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
ENV = {
    "NEXARA_HEAD_IP": "10.0.0.5",
    "NEXARA_WORKER_IPS": "10.0.0.6,10.0.0.7",
    "NEXARA_SSH_USER": "ops",
    "NEXARA_SSH_KEY": "/keys/ops_ed25519",
    "NEXARA_SSH_PORT": "2222",
    "NEXARA_AWS_AMI": "ami-0123456789abcdef0",
}


def _load(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    config = yaml.safe_load(render_file(CLUSTER / name, ENV if env is None else env))
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize("name", ["local.yaml", "single-box.yaml", "aws-gpu.yaml"])
def test_config_passes_rays_own_validation(name: str) -> None:
    config = _load(name)
    prepared = prepare_config(config)
    validate_config(prepared)  # raises on a schema violation
    text = yaml.safe_dump(config)
    assert "NEXARA_" not in text, "a placeholder survived rendering"
    # Every Ray start has token auth on and runs the project's venv, which setup builds from uv.lock.
    starts = config["head_start_ray_commands"] + config.get("worker_start_ray_commands", [])
    assert all("RAY_AUTH_MODE=token" in c and ".venv/bin/ray start" in c for c in starts if "ray start" in c)
    assert any("make setup-node" in c for c in config["setup_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"]
    # rsync honours .gitignore: no venv is copied, each node builds its own
    assert config["rsync_filter"] == [".gitignore"]


@pytest.mark.parametrize("name", ["local.yaml", "single-box.yaml"])
def test_on_prem_configs_never_run_ray_stop_and_take_the_ssh_port(name: str) -> None:
    config = _load(name)
    # `ray stop` kills every Ray process on the host: on-prem start commands only start ours.
    assert not any("ray stop" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert config["auth"] == {
        "ssh_user": "ops",
        "ssh_private_key": "/keys/ops_ed25519",
        "ssh_proxy_command": "nc %h 2222",
    }


def test_local_config_takes_head_and_workers_by_address() -> None:
    provider = _load("local.yaml")["provider"]
    assert provider == {"type": "local", "head_ip": "10.0.0.5", "worker_ips": ["10.0.0.6", "10.0.0.7"]}
    prepared = prepare_config(_load("local.yaml"))
    node_type = prepared["available_node_types"]["local.cluster.node"]
    assert node_type["min_workers"] == node_type["max_workers"] == 2
    no_workers = _load("local.yaml", {k: v for k, v in ENV.items() if k != "NEXARA_WORKER_IPS"})
    assert no_workers["provider"]["worker_ips"] == []


def test_single_box_defaults_to_this_machine_with_no_workers() -> None:
    config = _load("single-box.yaml", {})
    assert config["provider"]["head_ip"] == "127.0.0.1" and config["provider"]["worker_ips"] == []
    assert config["max_workers"] == 0 and config["auth"]["ssh_proxy_command"] == "nc %h 22"


def test_aws_config_cpu_head_and_autoscaled_gpu_workers() -> None:
    config = _load("aws-gpu.yaml", {**ENV, "NEXARA_MAX_GPU_WORKERS": "8"})
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["node_config"]["InstanceType"].startswith("m5.")
    gpu = config["available_node_types"]["gpu"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == 8 and config["max_workers"] == 8
    assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert gpu["node_config"]["ImageId"] == "ami-0123456789abcdef0"


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(MissingVariableError, match="NEXARA_HEAD_IP"):
        render_file(CLUSTER / "local.yaml", {})
    with pytest.raises(MissingVariableError, match="NEXARA_AWS_AMI"):
        render_file(CLUSTER / "aws-gpu.yaml", {})


def test_render_leaves_shell_variables_alone_and_treats_empty_as_unset() -> None:
    text = "a: ${NEXARA_A:-x} $RAY_HEAD_IP ${HOME} ${NEXARA_B}"
    assert placeholders(text) == {"NEXARA_A": "x", "NEXARA_B": None}
    assert render(text, {"NEXARA_A": "", "NEXARA_B": "b"}) == "a: x $RAY_HEAD_IP ${HOME} b"


def test_render_cli_writes_the_file_or_fails_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEXARA_HEAD_IP", raising=False)
    assert main([str(CLUSTER / "local.yaml")]) == 2
    assert "NEXARA_HEAD_IP" in capsys.readouterr().err
    monkeypatch.setenv("NEXARA_HEAD_IP", "192.168.1.2")
    out = tmp_path / "sub" / "local.yaml"
    assert main([str(CLUSTER / "local.yaml"), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["provider"]["head_ip"] == "192.168.1.2"
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "no cluster config" in capsys.readouterr().err
