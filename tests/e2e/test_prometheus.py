"""The live metrics scraped for real: Debian's `prometheus` on loopback, its targets from the service-
discovery file Ray writes (`prom_metrics_service_discovery.json` in the head's temp dir), while
`nexara watch` runs one camera on a `ray start --head` cluster (attached through RAY_ADDRESS); the
`ray_nexara_*` series are read back through Prometheus's HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from actors.live_metrics import exported_name
from cluster.local_head import LocalHead, free_port

REPO = Path(__file__).resolve().parents[2]
CLIP = "noFight/nofi066.mp4"

pytestmark = pytest.mark.timeout(900)


def _prometheus() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(path, os.X_OK):
        pytest.fail("prometheus is not installed: run `apt-get install prometheus` (Debian's package, as root)")
    return path


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_live_metrics_through_rays_service_discovery(shared_clips: Path, tmp_path: Path) -> None:
    binary = _prometheus()
    head = LocalHead(num_cpus=2, object_store_mb=256)
    head.start()
    procs: list[subprocess.Popen[bytes]] = []
    passed = False
    try:
        deadline = time.monotonic() + 60
        while not head.service_discovery_file.is_file():
            assert time.monotonic() < deadline, f"Ray wrote no {head.service_discovery_file}"
            time.sleep(0.5)
        sd = json.loads(head.service_discovery_file.read_text())
        sd_targets = {t for group in sd for t in group["targets"]}
        assert sd_targets, sd

        prom_port = free_port()
        # the shipped config, pointed at this head's discovery file and scraping faster
        conf_data = yaml.safe_load((REPO / "cluster" / "prometheus.yml").read_text())
        conf_data["global"]["scrape_interval"] = "2s"
        (job,) = conf_data["scrape_configs"]
        job["file_sd_configs"][0].update(files=[str(head.service_discovery_file)], refresh_interval="2s")
        conf = tmp_path / "prometheus.yml"
        conf.write_text(yaml.safe_dump(conf_data))
        prom_log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={conf}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=prom_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        base = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)

        env = {
            **head.env(),
            "RAY_ADDRESS": head.gcs_address,
            "NEXARA_API_TOKEN": "prometheus-test-token-0123456789",
        }
        watch_log = (tmp_path / "watch.log").open("wb")
        argv = [sys.executable, "-m", "nexara.cli", "watch", str(shared_clips / CLIP), "--loop"]
        argv += ["--duration", "90", "--run-dir", str(tmp_path / "run"), "--port", str(free_port())]
        watch = subprocess.Popen(argv, cwd=REPO, env=env, stdout=watch_log, stderr=subprocess.STDOUT)
        procs.append(watch)
        t_watch = time.monotonic()

        scored = exported_name("nexara_windows_scored", "counter")
        camera = Path(CLIP).stem
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 240
        while not found and watch.poll() is None and time.monotonic() < deadline:
            time.sleep(2)
            found = [s for s in _query(base, scored) if s["metric"].get("camera") == camera]
        assert found, (tmp_path / "watch.log").read_text()[-3000:]
        assert float(found[0]["value"][1]) > 0
        print(f"{scored} for {camera} read back from Prometheus {time.monotonic() - t_watch:.1f} s after watch started")
        # scraped by the job whose targets come from the discovery file Ray keeps
        assert found[0]["metric"]["job"] == "ray"
        active = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        sd = json.loads(head.service_discovery_file.read_text())  # Ray rewrites it as nodes come and go
        sd_targets = {t for group in sd for t in group["targets"]}
        assert any(t["health"] == "up" and t["labels"]["instance"] in sd_targets for t in active), (active, sd)
        last = _query(base, exported_name("nexara_last_score", "gauge") + f'{{camera="{camera}"}}')
        assert last and 0.0 <= float(last[0]["value"][1]) <= 1.0
        passed = True
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        head.stop()
        if passed:  # Ray's logs kept only when the test failed
            shutil.rmtree(head.temp_dir, ignore_errors=True)
