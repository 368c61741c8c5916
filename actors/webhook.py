"""The webhook sink: alerts POSTed as signed JSON, retried, never blocking the stream.

:class:`WebhookSink` never blocks the stream that calls :meth:`WebhookSink.submit`: the event is
serialised and put on a bounded queue served by one daemon worker thread, which POSTs it as JSON
(one ``httpx.Client``), in submission order, retrying connection errors, timeouts, 408, 429 and 5xx
with capped exponential backoff and full jitter (a ``Retry-After`` in seconds or as an HTTP date is
honoured, capped at ``backoff_max_s``). Any other non-2xx answer is permanent. An event that is not
delivered (permanent error, attempts used up, queue full, sink closed) is appended to a dead-letter
JSON Lines file, one fsynced line each, so nothing is dropped silently. A delivered event's key is appended
to the delivered ledger (``delivered_path``). Retention (:mod:`actors.retention`) compacts both files, so
every append holds the file's shared sidecar lock and reopens a replaced file (:mod:`actors.log_lock`).

Every request carries the Standard Webhooks headers: ``webhook-id: {event_id}:{kind}:{seq}`` (the
idempotency key: a retry of a request the receiver did get must be dropped by the receiver),
``webhook-timestamp`` (unix seconds of this attempt) and, when secrets are set, ``webhook-signature``
(:func:`actors.sinks.standard_signature`, one ``v1,`` signature per secret during key rotation). The
older ``Idempotency-Key``/``X-Nexara-Timestamp``/``X-Nexara-Signature`` (:func:`actors.sinks.sign`, with
the first secret) are still sent for receivers written against them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from actors.confirmation import AlertEvent
from actors.log_lock import APPEND_FLAGS, log_lock, reopen_if_replaced
from actors.sinks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    WHSEC_PREFIX,
    event_dict,
    idempotency_key,
    secret_bytes,
    sign,
    signing_key,
    standard_signature,
)
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["WebhookSink"]

#: Answers worth retrying besides 5xx: request timeout and rate limiting.
_RETRY_STATUS = frozenset({408, 429})


def _parse_retry_after(value: str | None, now_unix_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now_unix_s
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# --- webhook -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    event: dict[str, Any]
    body: bytes
    key: str


class WebhookSink:
    """POSTs each event as signed JSON to ``url`` from one background thread; see the module doc.

    ``dead_letter_path`` (created with its folder) receives, per undelivered event, one line
    ``{"event", "url", "attempts", "last_error", "failed_unix_s"}``. ``headers`` are added to every
    request (the sink's own headers win on a clash). ``secret`` is one secret or several (key rotation,
    newest first), each ``whsec_<base64 key>``; a plain secret still works but only the older
    ``X-Nexara-Signature`` can be checked with it (a warning says so).
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        dead_letter_path: str | os.PathLike[str],
        queue_size: int = 10_000,
        headers: Mapping[str, str] | None = None,
        delivered_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise InvalidInputError(f"webhook url must be a string, got {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"webhook url must be http:// or https:// with a host, got {url!r}")
        for name, value in (("timeout_s", timeout_s), ("backoff_max_s", backoff_max_s)):
            if not _is_number(value) or value <= 0:
                raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
        if not _is_number(backoff_initial_s) or backoff_initial_s < 0:
            raise InvalidInputError(f"backoff_initial_s must be a finite number >= 0, got {backoff_initial_s!r}")
        if backoff_initial_s > backoff_max_s:
            raise InvalidInputError(
                f"backoff_initial_s ({backoff_initial_s}) must be <= backoff_max_s ({backoff_max_s})"
            )
        for name, count in (("max_attempts", max_attempts), ("queue_size", queue_size)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {count!r}")
        extra = dict(headers or {})
        for k, v in extra.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidInputError(f"headers must map str to str, got {k!r}: {v!r}")

        self.url = url
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.dead_letter_path = Path(dead_letter_path)
        secrets = _secrets(secret)
        self._secret = secret_bytes(secrets[0]) if secrets else None  # the older header: newest secret
        self._keys = tuple(signing_key(s) for s in secrets)
        plain = [i for i, s in enumerate(secrets) if not secret_bytes(s).startswith(WHSEC_PREFIX.encode())]
        if plain:
            logger.warning(
                "webhook secret(s) %s are not 'whsec_<base64>': Standard Webhooks receivers cannot verify "
                "their webhook-signature (X-Nexara-Signature still works)",
                plain,
            )
        self._extra_headers = extra

        self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
        self._dl_fd = os.open(self.dead_letter_path, APPEND_FLAGS, 0o644)
        self._dl_lock = threading.Lock()  # both descriptors (a retention pass may make either one reopen)
        # the delivered ledger: one idempotency key per line, written after each 2xx (what a restarted camera
        # need not send again: actors.recovery.undelivered)
        self.delivered_path = None if delivered_path is None else Path(delivered_path)
        self._ok_fd = -1
        if self.delivered_path is not None:
            self.delivered_path.parent.mkdir(parents=True, exist_ok=True)
            self._ok_fd = os.open(self.delivered_path, APPEND_FLAGS, 0o644)

        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._counts = {"submitted": 0, "delivered": 0, "retries": 0, "dead_lettered": 0, "dead_letter_errors": 0}
        self._outstanding = 0  # queued or being delivered
        self._accepting = True
        self._deadline: float | None = None  # monotonic; set by close()
        self._wake = threading.Event()  # interrupts backoff waits on close()
        self._rng = random.Random()
        self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        self._worker = threading.Thread(target=self._run, name=f"webhook-sink:{parts.hostname}", daemon=True)
        self._worker.start()

    # public ----------------------------------------------------------------------------------

    def submit(self, event: Mapping[str, Any] | AlertEvent) -> None:
        """Queue one event for delivery; returns at once. A malformed event (no idempotency
        identity, not JSON-serialisable) raises ValueError/TypeError. A full queue or a closed
        sink sends the event to the dead-letter file instead."""
        data = event_dict(event)
        key = idempotency_key(data)
        try:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"event {key} is not JSON-serialisable: {exc}") from exc
        item = _Item(event=data, body=body, key=key)
        with self._lock:
            self._counts["submitted"] += 1
            accepting = self._accepting
            if accepting:
                self._outstanding += 1
        if not accepting:
            logger.warning("webhook sink closed; event %s dead-lettered", key)
            self._dead_letter(item, attempts=0, error="sink closed before submit")
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self._outstanding -= 1
            logger.warning("webhook queue full (%d); event %s dead-lettered", self._queue.maxsize, key)
            self._dead_letter(item, attempts=0, error=f"queue full ({self._queue.maxsize} events)")

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
            out["pending"] = self._outstanding
        return out

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting events, keep delivering the queue for up to ``timeout_s``, then
        dead-letter whatever is still undelivered. Idempotent."""
        if not _is_number(timeout_s) or timeout_s < 0:
            raise InvalidInputError(f"timeout_s must be a finite number >= 0, got {timeout_s!r}")
        with self._lock:
            first = self._accepting
            self._accepting = False
            if first:
                self._deadline = time.monotonic() + timeout_s
        self._wake.set()
        if not first and not self._worker.is_alive():
            return
        # The worker bounds each request by the deadline, so this join is short past it.
        self._worker.join(timeout_s + min(self.timeout_s, 5.0) + 1.0)
        if self._worker.is_alive():
            logger.error("webhook worker did not stop within %.1fs; left running (daemon)", timeout_s)
            self._drain_to_dead_letter("sink closed before delivery")
            return
        self._drain_to_dead_letter("sink closed before delivery")
        self._client.close()
        with self._dl_lock:
            if self._dl_fd >= 0:
                os.close(self._dl_fd)
                self._dl_fd = -1
            if self._ok_fd >= 0:
                os.close(self._ok_fd)
                self._ok_fd = -1
        logger.info("webhook sink closed: %s", self.stats())

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # worker ----------------------------------------------------------------------------------

    def _closing(self) -> bool:
        return self._deadline is not None

    def _remaining(self) -> float | None:
        deadline = self._deadline
        return None if deadline is None else deadline - time.monotonic()

    def _run(self) -> None:
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._drain_to_dead_letter("sink closed before delivery (close timeout)")
                return
            try:
                item = self._queue.get(timeout=0.05 if self._closing() else 0.5)
            except queue.Empty:
                if self._closing():
                    return
                continue
            try:
                self._deliver(item)
            except Exception as exc:  # never let the worker die: the event must still be accounted for
                logger.exception("webhook worker failed on event %s", item.key)
                self._dead_letter(item, attempts=0, error=f"internal error: {exc!r}")
            finally:
                with self._lock:
                    self._outstanding -= 1

    def _deliver(self, item: _Item) -> None:
        last_error = ""
        attempt = 0
        while attempt < self.max_attempts:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._dead_letter(item, attempt, f"{last_error}; sink closed before delivery".lstrip("; "))
                return
            attempt += 1
            timeout = self.timeout_s if remaining is None else max(0.05, min(self.timeout_s, remaining))
            retry_after: float | None = None
            try:
                response = self._post(item, timeout)
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._record_delivered(item.key)
                    with self._lock:
                        self._counts["delivered"] += 1
                    logger.debug("event %s delivered (attempt %d, HTTP %d)", item.key, attempt, status)
                    return
                last_error = f"HTTP {status}: {response.text[:200]}".rstrip(": ")
                if status < 500 and status not in _RETRY_STATUS:
                    logger.error("webhook refused event %s permanently (%s); dead-lettered", item.key, last_error)
                    self._dead_letter(item, attempt, last_error)
                    return
                retry_after = _parse_retry_after(response.headers.get("Retry-After"), time.time())
            if attempt >= self.max_attempts:
                break
            delay = self._backoff(attempt, retry_after)
            logger.warning(
                "webhook delivery of %s failed (attempt %d/%d: %s); retrying in %.2fs",
                item.key,
                attempt,
                self.max_attempts,
                last_error,
                delay,
            )
            with self._lock:
                self._counts["retries"] += 1
            self._sleep(delay)
        logger.error("webhook gave up on event %s after %d attempts (%s); dead-lettered", item.key, attempt, last_error)
        self._dead_letter(item, attempt, last_error)

    def _sleep(self, delay_s: float) -> None:
        """Back off for ``delay_s``, never past the close deadline; close() cuts a wait begun before it."""
        end = time.monotonic() + delay_s
        while True:
            deadline = self._deadline
            stop = end if deadline is None else min(end, deadline)
            now = time.monotonic()
            if now >= stop:
                return
            if deadline is None:
                self._wake.wait(stop - now)  # returns early when close() sets the deadline
            else:
                time.sleep(stop - now)

    def _post(self, item: _Item, timeout: float) -> httpx.Response:
        headers = dict(self._extra_headers)
        timestamp = str(int(time.time()))
        headers["Content-Type"] = "application/json"
        headers[WEBHOOK_ID_HEADER] = item.key
        headers[WEBHOOK_TIMESTAMP_HEADER] = timestamp
        headers[IDEMPOTENCY_HEADER] = item.key
        headers[TIMESTAMP_HEADER] = timestamp
        if self._secret is not None:
            headers[WEBHOOK_SIGNATURE_HEADER] = standard_signature(self._keys, item.key, timestamp, item.body)
            headers[SIGNATURE_HEADER] = sign(self._secret, item.body, timestamp)
        return self._client.post(self.url, content=item.body, headers=headers, timeout=timeout)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempt - 1))
        return self._rng.uniform(0.0, cap)  # full jitter

    def _record_delivered(self, key: str) -> None:
        # one O_APPEND write per key (no fsync: it guards against a killed process, whose page cache survives;
        # after a power cut the receiver drops a resent event by its webhook-id)
        if self.delivered_path is None:
            return
        try:
            with self._dl_lock:
                if self._ok_fd < 0:
                    return
                with log_lock(self.delivered_path, exclusive=False):
                    self._ok_fd = reopen_if_replaced(self._ok_fd, self.delivered_path)
                    _write_all(self._ok_fd, (key + "\n").encode("utf-8"))
        except OSError as exc:
            logger.warning("delivered ledger %s not written (%s): %s may be sent again", self.delivered_path, exc, key)

    # dead letters ----------------------------------------------------------------------------

    def _drain_to_dead_letter(self, error: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            logger.error("event %s not delivered before close; dead-lettered", item.key)
            self._dead_letter(item, attempts=0, error=error)
            with self._lock:
                self._outstanding -= 1

    def _dead_letter(self, item: _Item, attempts: int, error: str) -> None:
        record = {
            "event": item.event,
            "url": self.url,
            "attempts": attempts,
            "last_error": error,
            "failed_unix_s": time.time(),
        }
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        with self._dl_lock:
            try:
                with log_lock(self.dead_letter_path, exclusive=False):
                    if self._dl_fd >= 0:
                        self._dl_fd = reopen_if_replaced(self._dl_fd, self.dead_letter_path)
                        _write_all(self._dl_fd, line)
                        os.fsync(self._dl_fd)
                    else:  # after close() (a late submit) the file is opened just for this record
                        fd = os.open(self.dead_letter_path, APPEND_FLAGS, 0o644)
                        try:
                            _write_all(fd, line)
                            os.fsync(fd)
                        finally:
                            os.close(fd)
            except OSError as exc:
                with self._lock:
                    self._counts["dead_letter_errors"] += 1
                # Last resort: the record goes to the log so it is not lost silently.
                logger.error("cannot write dead-letter file %s (%s); lost record: %s", self.dead_letter_path, exc, line)
                return
        with self._lock:
            self._counts["dead_lettered"] += 1


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


def _secrets(secret: str | bytes | Sequence[str | bytes] | None) -> tuple[str | bytes, ...]:
    if secret is None:
        return ()
    if isinstance(secret, (str, bytes)):
        return (secret,)
    secrets = tuple(secret)
    if not secrets:
        raise InvalidInputError("webhook secret list is empty (give None for unsigned requests)")
    return secrets


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
