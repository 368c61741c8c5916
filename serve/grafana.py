"""A Grafana dashboard over the live path's metrics (:mod:`actors.live_metrics`), and its upload with
``grafana-client``.

Ray exports every node's metrics in Prometheus format and writes a service-discovery file for Prometheus
(``/tmp/ray/prom_metrics_service_discovery.json``); point a Prometheus ``file_sd_configs`` job at it and
add that Prometheus to Grafana as a data source. ``nexara grafana dashboard --out nexara.json`` writes the
dashboard for import; ``--url`` (and a token in ``$GRAFANA_TOKEN``) uploads it.
"""

from __future__ import annotations

from typing import Any

from actors.live_metrics import METRICS, QUALITY_METRICS, SOURCE_METRICS, Kind, exported_name

DASHBOARD_UID = "nexara-live"
_SHARES = ("nexara_last_score", "nexara_review_precision")  # panels shown in percent


def _expr(name: str, kind: Kind, by: str) -> str:
    """PromQL of one panel: counters as per-second rates, gauges as their value, by camera or source
    (camera panels follow the dashboard's ``camera`` variable)."""
    series = exported_name(name, kind)
    if by == "camera":
        series += '{camera=~"$camera"}'
    if kind == "counter":
        return f"sum by ({by}) (rate({series}[1m]))"
    return f"max by ({by}) ({series})"


def dashboard(datasource_uid: str | None = None, *, title: str = "NexaraVision live") -> dict[str, Any]:
    """The dashboard JSON (Grafana schema 39): one time-series panel per metric, by camera (or source),
    the per-camera quality gauges (review precision, score drift) last, with a ``camera`` variable.
    ``datasource_uid``: the Prometheus data source (default: the default one)."""
    ds: dict[str, Any] = {"type": "prometheus"}
    if datasource_uid:
        ds["uid"] = datasource_uid
    panels: list[dict[str, Any]] = []
    specs: list[tuple[str, Kind, str, str]] = [(n, k, d, "camera") for n, k, d, _ in METRICS]
    specs += [(n, k, d, "source") for n, k, d, _ in SOURCE_METRICS]
    specs += [(n, k, d, "camera") for n, k, d in QUALITY_METRICS]
    for i, (name, kind, desc, by) in enumerate(specs):
        unit = "s" if name.endswith("_seconds") else ("percentunit" if name in _SHARES else "short")
        title_ = name.removeprefix("nexara_").replace("_", " ")
        if kind == "counter":
            title_ += " /s"
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title_,
                "description": desc,
                "datasource": ds,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": ds,
                        "expr": _expr(name, kind, by),
                        "legendFormat": "{{" + by + "}}",
                    }
                ],
            }
        )
    return {
        "uid": DASHBOARD_UID,
        "title": title,
        "tags": ["nexara", "ray"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "camera",
                    "type": "query",
                    "datasource": ds,
                    "query": f"label_values({exported_name('nexara_windows_scored', 'counter')}, camera)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                }
            ]
        },
        "panels": panels,
    }


def push(url: str, token: str, board: dict[str, Any], *, folder_uid: str | None = None) -> dict[str, Any]:
    """Create or overwrite the dashboard on the Grafana at ``url`` (an API token or service-account
    token). Returns Grafana's reply (uid, url, version)."""
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(url, credential=token, timeout=10.0)
    payload: dict[str, Any] = {"dashboard": {**board, "id": None}, "overwrite": True, "message": "nexara"}
    if folder_uid:
        payload["folderUid"] = folder_uid
    reply: dict[str, Any] = api.dashboard.update_dashboard(payload)
    return reply
