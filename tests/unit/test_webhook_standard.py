"""actors.webhook per the Standard Webhooks spec: a real HTTP receiver checks every delivery with the
reference verifier from PyPI (``standardwebhooks``), as a receiver would, including key rotation
(the receiver knows only one of the secrets), retries signed afresh, a wrong secret refused and a
tampered body refused."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from actors.sinks import idempotency_key, parse_secrets, signing_key
from actors.webhook import WebhookSink

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402
from webhook_receiver import serve_hooks  # noqa: E402


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload the verifier returned, or the WebhookVerificationError


@dataclass
class VerifyingReceiver:
    """A real HTTP server on 127.0.0.1 that verifies each POST with ``Webhook(secret).verify`` and
    answers 204 when it verifies, 400 when it does not; ``fail_first`` requests get a 503 first."""

    secret: str
    fail_first: int = 0
    deliveries: list[Delivery] = field(default_factory=list)

    def start(self) -> VerifyingReceiver:
        receiver = self
        verifier = Webhook(self.secret)
        lock = threading.Lock()

        def respond(headers: dict[str, str], body: bytes) -> int:
            try:
                verified: Any = verifier.verify(body, headers)
            except WebhookVerificationError as exc:
                verified = exc
            with lock:
                n = len(receiver.deliveries)
                receiver.deliveries.append(Delivery(headers, body, verified))
            if n < receiver.fail_first:
                return 503
            return 400 if isinstance(verified, WebhookVerificationError) else 204

        self.server = serve_hooks(respond)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[VerifyingReceiver]]:
    started: list[VerifyingReceiver] = []
    yield started
    for r in started:
        r.stop()


def receiver(receivers: list[VerifyingReceiver], secret: str, **kw: Any) -> VerifyingReceiver:
    rx = VerifyingReceiver(secret, **kw).start()
    receivers.append(rx)
    return rx


def test_every_delivery_verifies_with_the_reference_library(tmp_path: Path, receivers: list[VerifyingReceiver]) -> None:
    secret = new_secret()
    rx = receiver(receivers, secret)
    sink = WebhookSink(rx.url, secret=secret, dead_letter_path=tmp_path / "dl.jsonl")
    events = [make_event(1), make_event(1, kind="update", seq=1), make_event(1, kind="end", seq=2)]
    for e in events:
        sink.submit(e)
    sink.close()

    assert [d.verified for d in rx.deliveries] == [e.to_dict() for e in events]  # verified, in order
    for event, d in zip(events, rx.deliveries, strict=True):
        assert d.headers["webhook-id"] == idempotency_key(event)  # the idempotency key
        assert abs(int(d.headers["webhook-timestamp"]) - time.time()) < 60
        assert d.headers["webhook-signature"].startswith("v1,") and " " not in d.headers["webhook-signature"]
    stats = sink.stats()
    assert stats["delivered"] == 3 and stats["dead_lettered"] == 0


def test_key_rotation_signs_with_every_secret(tmp_path: Path, receivers: list[VerifyingReceiver]) -> None:
    new, old = new_secret(), new_secret()
    only_new = receiver(receivers, new)
    only_old = receiver(receivers, old)
    for rx in (only_new, only_old):
        sink = WebhookSink(rx.url, secret=[new, old], dead_letter_path=tmp_path / "dl.jsonl")
        sink.submit(make_event(2))
        sink.close()
        assert len(rx.deliveries) == 1
        assert rx.deliveries[0].verified == make_event(2).to_dict()
        assert len(rx.deliveries[0].headers["webhook-signature"].split(" ")) == 2  # one per secret
    # a receiver that knows neither secret refuses (400: permanent, dead-lettered, not retried)
    stranger = receiver(receivers, new_secret())
    sink = WebhookSink(stranger.url, secret=[new, old], dead_letter_path=tmp_path / "dl2.jsonl")
    sink.submit(make_event(3))
    sink.close()
    assert len(stranger.deliveries) == 1 and isinstance(stranger.deliveries[0].verified, WebhookVerificationError)
    assert sink.stats()["dead_lettered"] == 1


def test_a_tampered_body_or_header_is_refused(tmp_path: Path, receivers: list[VerifyingReceiver]) -> None:
    secret = new_secret()
    rx = receiver(receivers, secret)
    sink = WebhookSink(rx.url, secret=secret, dead_letter_path=tmp_path / "dl.jsonl")
    sink.submit(make_event(4))
    sink.close()
    d = rx.deliveries[0]
    verifier = Webhook(secret)
    assert verifier.verify(d.body, d.headers) == make_event(4).to_dict()
    tampered = json.loads(d.body)
    tampered["peak_probability"] = 0.01
    with pytest.raises(WebhookVerificationError):
        verifier.verify(json.dumps(tampered, separators=(",", ":")).encode(), d.headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(d.body + b" ", d.headers)
    with pytest.raises(WebhookVerificationError):  # the id is signed too: a replay under another id fails
        verifier.verify(d.body, {**d.headers, "webhook-id": "cam-1-4000-4:end:9"})
    with pytest.raises(WebhookVerificationError):  # and the timestamp
        verifier.verify(d.body, {**d.headers, "webhook-timestamp": str(int(d.headers["webhook-timestamp"]) - 1)})


def test_retries_are_signed_afresh_with_the_same_id(tmp_path: Path, receivers: list[VerifyingReceiver]) -> None:
    secret = new_secret()
    rx = receiver(receivers, secret, fail_first=2)
    sink = WebhookSink(rx.url, secret=secret, backoff_initial_s=0.01, dead_letter_path=tmp_path / "dl.jsonl")
    sink.submit(make_event(5))
    sink.close()
    assert len(rx.deliveries) == 3
    assert {d.headers["webhook-id"] for d in rx.deliveries} == {idempotency_key(make_event(5))}
    assert all(d.verified == make_event(5).to_dict() for d in rx.deliveries)
    assert sink.stats()["delivered"] == 1 and sink.stats()["retries"] == 2


def test_secrets_from_one_environment_variable(tmp_path: Path) -> None:
    new, old = new_secret(), new_secret()
    assert parse_secrets(f"  {new} {old}\n") == (new, old)
    assert parse_secrets(f"{new},{old}") == (new, old)
    unpadded = new.rstrip("=")
    assert signing_key(unpadded) == signing_key(new) == base64.b64decode(new[len("whsec_") :])
    assert signing_key("plain-secret") == b"plain-secret"  # the older form: its bytes
    for bad in ("", "   ", "whsec_!!!not-base64", "whsec_"):
        with pytest.raises(ValueError, match="secret"):
            parse_secrets(bad)
    with pytest.raises(ValueError, match="secret"):
        WebhookSink("http://127.0.0.1:9/x", secret=[], dead_letter_path=tmp_path / "dl.jsonl")


def test_built_from_the_config_with_rotating_secrets_in_one_variable(
    tmp_path: Path, receivers: list[VerifyingReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.stream_sinks import webhook_sink
    from nexara.config import parse_config
    from nexara.errors import ConfigError

    new, old = new_secret(), new_secret()
    rx = receiver(receivers, old)  # this receiver has not been given the new secret yet
    cfg = parse_config(f"sinks:\n  webhook: {{url: '{rx.url}', secret_env: NX_HOOK_SECRETS}}\n")
    assert cfg.sinks.webhook is not None
    with pytest.raises(ConfigError, match="NX_HOOK_SECRETS"):
        webhook_sink(cfg.sinks.webhook, tmp_path)
    monkeypatch.setenv("NX_HOOK_SECRETS", f"{new} {old}")
    sink = webhook_sink(cfg.sinks.webhook, tmp_path)
    sink.submit(make_event(6))
    sink.close()
    assert [d.verified for d in rx.deliveries] == [make_event(6).to_dict()]
    assert sink.stats()["delivered"] == 1
