"""A webhook receiver on loopback for the tests: a real HTTP server that hands each POST's headers and body to
``respond`` and answers with the status it returns (empty body)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[dict[str, str], bytes], int]


def serve_hooks(respond: Respond) -> ThreadingHTTPServer:
    """Start the server on a free loopback port (``server.server_address[1]``); ``server.shutdown()`` ends it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = respond(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
