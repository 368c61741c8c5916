"""``nexara grafana dashboard``: print, write or upload the dashboard over the live metrics."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_grafana_dashboard(args: argparse.Namespace) -> int:
    from serve.grafana import dashboard, push

    board = dashboard(args.datasource)
    if args.out:
        Path(args.out).write_text(json.dumps(board, indent=1) + "\n", encoding="utf-8")
        sys.stdout.write(f"wrote the dashboard ({len(board['panels'])} panels) to {args.out}\n")
    if args.url:
        token = os.environ.get(args.token_env, "")
        if not token:
            sys.stderr.write(f"nexara: error: set {args.token_env} to a Grafana API or service-account token\n")
            return 2
        try:
            reply = push(args.url, token, board, folder_uid=args.folder)
        except Exception as exc:  # grafana-client raises its own errors and niquests' connection errors
            sys.stderr.write(f"nexara: error: Grafana at {args.url} refused the dashboard: {exc}\n")
            return 1
        sys.stdout.write(f"uploaded to {args.url}: {json.dumps(reply)}\n")
    if not args.out and not args.url:
        sys.stdout.write(json.dumps(board, indent=1) + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gf = sub.add_parser("grafana", help="Grafana dashboard of the live metrics")
    gfsub = gf.add_subparsers(dest="grafana_cmd", required=True)
    gfd = gfsub.add_parser("dashboard", help="print, write (--out) or upload (--url) the dashboard JSON")
    gfd.add_argument("--out", help="write the dashboard JSON here (for Grafana's import)")
    gfd.add_argument("--url", help="upload to this Grafana (http://host:3000) with grafana-client")
    gfd.add_argument("--token-env", default="GRAFANA_TOKEN", help="variable holding the Grafana token")
    gfd.add_argument("--datasource", help="uid of the Prometheus data source (default: Grafana's default)")
    gfd.add_argument("--folder", help="uid of the Grafana folder to put it in")
    gfd.set_defaults(func=cmd_grafana_dashboard)
