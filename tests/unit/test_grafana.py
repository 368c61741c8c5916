"""The Grafana dashboard of the live metrics and its upload with grafana-client. No Grafana server can run
on this machine (no package ships one), so the upload goes to a local HTTP stand-in that answers like
Grafana's ``POST /api/dashboards/db``; everything on our side (grafana-client, auth header, payload) is real."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from actors.live_metrics import METRICS, QUALITY_METRICS, SOURCE_METRICS, exported_name
from nexara.cli import main
from serve.grafana import DASHBOARD_UID, dashboard, push


class _Grafana(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []  # noqa: RUF012
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        reply = (
            {"id": 7, "uid": body["dashboard"]["uid"], "url": "/d/x", "status": "success", "version": 1}
            if type(self).status == 200
            else {"message": "invalid API key"}
        )
        data = json.dumps(reply).encode()
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[str]:
    _Grafana.requests, _Grafana.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_dashboard_has_a_panel_per_exported_metric() -> None:
    board = dashboard("prom-uid")
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for name, kind, _, _ in (*METRICS, *SOURCE_METRICS):
        series = exported_name(name, kind)
        assert any(series in e for e in exprs), series
        if kind == "counter":
            assert any(f"rate({series}" in e for e in exprs), series
    assert len(board["panels"]) == len(METRICS) + len(SOURCE_METRICS) + len(QUALITY_METRICS)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert all(p["datasource"]["uid"] == "prom-uid" for p in board["panels"])
    assert board["templating"]["list"][0]["name"] == "camera"
    assert all('camera=~"$camera"' in p["targets"][0]["expr"] for p in board["panels"][: len(METRICS)])
    quality = board["panels"][-len(QUALITY_METRICS) :]  # per camera, as gauges
    for (name, kind, _), panel in zip(QUALITY_METRICS, quality, strict=True):
        assert panel["targets"][0]["expr"] == f'max by (camera) ({exported_name(name, kind)}{{camera=~"$camera"}})'


def test_push_uploads_with_the_token(grafana: str) -> None:
    reply = push(grafana, "glsa_secret_token", dashboard())
    assert reply["uid"] == DASHBOARD_UID
    (req,) = _Grafana.requests
    assert req["path"] == "/api/dashboards/db"
    assert req["auth"] == "Bearer glsa_secret_token"
    assert req["body"]["overwrite"] is True and req["body"]["dashboard"]["uid"] == DASHBOARD_UID


def test_cli_writes_uploads_and_reports_errors(
    grafana: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "board.json"
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "dashboard", "--out", str(out), "--url", grafana]) == 2
    assert "GRAFANA_TOKEN" in capsys.readouterr().err
    assert json.loads(out.read_text())["uid"] == DASHBOARD_UID
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_secret_token")
    assert main(["grafana", "dashboard", "--url", grafana]) == 0
    assert len(_Grafana.requests) == 1
    _Grafana.status = 401
    assert main(["grafana", "dashboard", "--url", grafana]) == 1
    assert "refused" in capsys.readouterr().err
