"""cluster/grafana/: the provisioning Grafana reads at start (data source + dashboard provider) and the
dashboard JSON it loads agree with each other and with the dashboard `nexara grafana` generates today
(a metric added to actors/live_metrics.py without `make grafana-provisioning` fails here)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from serve.grafana import DASHBOARD_UID, dashboard

GRAFANA = Path(__file__).resolve().parents[2] / "cluster" / "grafana"


def _yaml(rel: str) -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load((GRAFANA / rel).read_text(encoding="utf-8")))


def test_shipped_dashboard_is_the_generated_one_on_the_provisioned_datasource() -> None:
    sources = _yaml("provisioning/datasources/prometheus.yaml")["datasources"]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    uid = sources[0]["uid"]
    shipped = json.loads((GRAFANA / "dashboards" / "nexara.json").read_text(encoding="utf-8"))
    assert shipped == dashboard(uid), "cluster/grafana/dashboards/nexara.json is stale: run `make grafana-provisioning`"
    assert shipped["uid"] == DASHBOARD_UID
    used = {p["datasource"]["uid"] for p in shipped["panels"]} | {
        t["datasource"]["uid"] for p in shipped["panels"] for t in p["targets"]
    }
    assert used == {uid}


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    providers = _yaml("provisioning/dashboards/nexara.yaml")["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    # Grafana expands ${VAR} in provisioning files; the README says to set it to cluster/grafana/dashboards
    assert providers[0]["options"]["path"] == "${NEXARA_GRAFANA_DASHBOARDS}"
    assert sorted(p.name for p in (GRAFANA / "dashboards").iterdir()) == ["nexara.json"]
