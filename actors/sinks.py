"""The alert sinks' one protocol (:class:`Sink`), the identity and signature of an event, and the console
printer. The event log (:mod:`actors.event_log`) is the first, durable sink; the webhook
(:mod:`actors.webhook`) and the console come after it.

Every message has an identity, ``{event_id}:{kind}:{seq}`` (:func:`idempotency_key`). A webhook request
is signed per the Standard Webhooks spec (:func:`standard_signature`: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one signature per
secret during key rotation, ``whsec_<base64 key>`` secrets), so any Standard Webhooks verifier checks it.
The older ``X-Nexara-Signature: sha256=<hex HMAC-SHA256(secret, "{X-Nexara-Timestamp}." + body)>``
(:func:`sign`, checked by :func:`verify_signature`) is still sent for receivers written against it.

:class:`ConsoleSink` writes one human-readable line per event to a text stream (the CLI's printer).
No Ray here: the stream actor owns the sinks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TextIO

from actors.confirmation import AlertEvent
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ConsoleSink",
    "Sink",
    "event_dict",
    "idempotency_key",
    "parse_secrets",
    "sign",
    "signing_key",
    "standard_signature",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Nexara-Signature"
TIMESTAMP_HEADER = "X-Nexara-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Standard Webhooks (https://www.standardwebhooks.com): lower-case, as the spec writes them.
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
WHSEC_PREFIX = "whsec_"


class Sink(Protocol):
    """The one protocol of every alert sink: the event log (:class:`actors.event_log.EventLog`, the
    first and durable one), the webhook and the console. ``submit`` must not block the stream."""

    def submit(self, event: Mapping[str, Any] | AlertEvent) -> None: ...

    def close(self, timeout_s: float = 10.0) -> None: ...

    def stats(self) -> dict[str, int]: ...


# --- identity and signatures -------------------------------------------------------------------


def event_dict(event: Mapping[str, Any] | AlertEvent) -> dict[str, Any]:
    if isinstance(event, AlertEvent):
        return event.to_dict()
    if not isinstance(event, Mapping):
        raise TypeError(f"event must be a mapping (AlertEvent.to_dict() shape), got {type(event).__name__}")
    return dict(event)


def idempotency_key(event: Mapping[str, Any] | AlertEvent) -> str:
    """``"{event_id}:{kind}:{seq}"``: the identity of one message of one incident."""
    data = event_dict(event)
    event_id = data.get("event_id")
    kind = data.get("kind")
    seq = data.get("seq")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidInputError(f"event needs a non-empty string 'event_id', got {event_id!r}")
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(f"event {event_id!r} needs a non-empty string 'kind', got {kind!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInputError(f"event {event_id!r} needs an integer 'seq' >= 0, got {seq!r}")
    return f"{event_id}:{kind}:{seq}"


def secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise InvalidInputError("webhook secret must be a non-empty str or bytes")
    return secret


def signing_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decodes to its bytes (Standard Webhooks); any other
    secret (the older plain form) is used as its UTF-8 bytes, which Standard Webhooks verifiers cannot
    reproduce: :class:`actors.webhook.WebhookSink` warns about it."""
    raw = secret_bytes(secret)
    if not raw.startswith(WHSEC_PREFIX.encode()):
        return raw
    try:
        body = raw[len(WHSEC_PREFIX) :]
        key = base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)  # padding is optional
    except (binascii.Error, ValueError):
        raise InvalidInputError("webhook secret 'whsec_…' must be followed by standard base64") from None
    if not key:
        raise InvalidInputError("webhook secret 'whsec_' has an empty key")
    return key


def parse_secrets(value: str) -> tuple[str, ...]:
    """The secrets of one environment variable: separated by whitespace or commas, newest first (key
    rotation: the receiver may know only one of them). ``whsec_`` base64 never contains either."""
    secrets = tuple(s for s in value.replace(",", " ").split() if s)
    if not secrets:
        raise InvalidInputError("no webhook secret given")
    for s in secrets:
        signing_key(s)  # a malformed whsec_ secret fails here, at configuration time
    return secrets


def standard_signature(keys: Sequence[bytes], msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}." + body)>``
    for each key, space-separated (several during key rotation)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii") for key in keys
    )


def sign(secret: str | bytes, body: bytes, timestamp: str) -> str:
    """The ``X-Nexara-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str,
    header: str,
    *,
    max_age_s: float | None = None,
    now_unix_s: float | None = None,
) -> bool:
    """True when ``header`` (the ``X-Nexara-Signature`` value) signs ``body`` sent at ``timestamp``
    (the ``X-Nexara-Timestamp`` value) with ``secret``. Constant-time comparison. With
    ``max_age_s``, a timestamp further than that from now (either way) is rejected too (replays)."""
    if not isinstance(body, bytes):
        raise TypeError(f"body must be the raw request bytes, got {type(body).__name__}")
    if not isinstance(header, str) or not isinstance(timestamp, str):
        return False
    expected = sign(secret, body, timestamp)
    ok = hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8", "replace"))
    if ok and max_age_s is not None:
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        now = time.time() if now_unix_s is None else now_unix_s
        ok = math.isfinite(sent) and abs(now - sent) <= max_age_s
    return ok


# --- console -----------------------------------------------------------------------------------


class ConsoleSink:
    """One line per event on ``stream`` (default: ``sys.stdout`` at write time), e.g.

    ``2026-03-01T12:00:03+00:00  START  cam-1  evt cam-1-12400-1  p=0.91 HIGH  t=12.4s``
    ``2026-03-01T12:00:11+00:00  END    cam-1  evt cam-1-12400-1  p=0.93 HIGH  t=20.1s  dur=7.7s (quiet)  clip=…``
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._submitted = 0

    @staticmethod
    def format(event: Mapping[str, Any] | AlertEvent) -> str:
        data = event_dict(event)
        key = idempotency_key(data)
        try:
            camera = str(data["camera_id"])
            peak = float(data["peak_probability"])
            at_s = float(data["at_s"])
            tier = str(data["tier"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"event {key} lacks a field the console needs: {exc!r}") from exc
        wall = data.get("logged_unix_s")
        wall_s = float(wall) if isinstance(wall, (int, float)) else time.time()
        stamp = datetime.fromtimestamp(wall_s).astimezone().isoformat(timespec="seconds")
        parts = [stamp, f"{str(data['kind']).upper():<6}", camera, f"evt {data['event_id']}", f"p={peak:.2f} {tier}"]
        parts.append(f"t={at_s:.1f}s")
        if data["kind"] == "end":
            start_s, end_s = data.get("start_s"), data.get("end_s")
            if isinstance(start_s, (int, float)) and isinstance(end_s, (int, float)):
                parts.append(f"dur={end_s - start_s:.1f}s ({data.get('end_reason') or '?'})")
            else:
                parts.append(f"({data.get('end_reason') or '?'})")
        if data.get("clip_path"):
            parts.append(f"clip={data['clip_path']}")
        return "  ".join(parts)

    def submit(self, event: Mapping[str, Any] | AlertEvent) -> None:
        line = self.format(event)
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            stream.write(line + "\n")
            stream.flush()
            self._submitted += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"submitted": self._submitted, "delivered": self._submitted, "pending": 0}

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            stream.flush()
