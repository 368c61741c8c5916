"""The MQTT sink: alerts published to a broker (paho-mqtt), with Home Assistant discovery; never blocks
the stream.

Topics (``P`` = ``topic_prefix``, ``D`` = ``discovery_prefix``):

- ``P/available``: ``online`` / ``offline``, retained. ``offline`` is the last will (the broker
  publishes it when the connection dies) and is published on a clean :meth:`MqttSink.close`; ``online``
  on every (re)connect. Every source has its own sink and connection under the same prefix, so each
  open sink also listens to ``P/available`` and answers another's ``offline`` with ``online``: the
  topic says offline only once the last source is gone.
- ``P/events``: each start/update/end event as JSON (the event log's record), QoS 1, never retained.
- ``P/<camera>/violence``: ``ON`` from an incident's start to its end, ``OFF`` after; retained, so a
  subscriber that arrives late reads the current state.
- ``D/binary_sensor/<node>_<camera>/config``: Home Assistant discovery of one ``safety`` binary sensor
  per camera, retained, with ``P/available`` as its availability.

On every (re)connect ``online``, the discovery configs and the current states are published again (a
broker restarted without persistence has lost its retained messages). :meth:`MqttSink.submit` only puts
the event on a bounded queue; one worker thread publishes while the broker is connected, and paho's own
network thread (re)connects with backoff. A full queue or a closed sink drops the event, counted in
:meth:`MqttSink.stats` (the event log already holds it durably). The password is never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from actors.confirmation import AlertEvent
from actors.sinks import event_dict, idempotency_key
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["MqttSink", "MqttTls"]

ONLINE = "online"
OFFLINE = "offline"
ON = "ON"
OFF = "OFF"
_QOS = 1


@dataclass(frozen=True, slots=True)
class MqttTls:
    """TLS to the broker: ``ca_file`` (None: the system CAs), an optional client certificate and key,
    and ``insecure`` to skip the host name check (self-signed test brokers only)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool
    key: str  # the event's identity, for the log


def _object_id(camera_id: str) -> str:
    """Home Assistant ids allow letters, digits, '_' and '-' only; camera ids may also hold '.'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", camera_id)


class MqttSink:
    """Publishes events to an MQTT broker from its own threads; see the module doc."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str,
        topic_prefix: str = "nexara",
        cameras: Sequence[str] = (),
        discovery: bool = True,
        discovery_prefix: str = "homeassistant",
        node_id: str = "nexara",
        username: str | None = None,
        password: str | None = None,
        tls: MqttTls | None = None,
        keepalive_s: int = 30,
        queue_size: int = 1000,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise InvalidInputError(f"mqtt host must be a non-empty string, got {host!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidInputError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        for name, prefix in (("topic_prefix", topic_prefix), ("discovery_prefix", discovery_prefix)):
            if not prefix or any(c in prefix for c in "#+"):
                raise InvalidInputError(f"{name} must be a non-empty topic without wildcards, got {prefix!r}")
        if password is not None and username is None:
            raise InvalidInputError("an mqtt password needs a username")
        self.host, self.port = host, port
        self.prefix = topic_prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.node_id = node_id
        self.discovery = discovery
        self.availability_topic = f"{self.prefix}/available"
        self.events_topic = f"{self.prefix}/events"

        self._lock = threading.Lock()
        self._cameras: list[str] = []
        self._states: dict[str, str] = {}  # camera -> ON/OFF last published
        self._open: dict[str, set[str]] = {}  # camera -> event ids alerting (a wall cell has one at a time)
        self._counts = {"submitted": 0, "delivered": 0, "dropped": 0, "connects": 0}
        self._pending = 0
        self._in_flight: dict[int, bool] = {}  # message id -> counted (an event's): handed to paho, not acked
        self._acked: set[int] = set()
        self._announce = threading.Event()  # set on connect: online, discovery and states are due
        self._accepting = True
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=queue_size)

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        client.enable_logger(logger)  # paho logs no credentials
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.availability_topic, OFFLINE, qos=_QOS, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_availability
        self._client = client
        for camera in cameras:
            self._add_camera(camera)
        # connect_async + loop_start: the network thread connects and reconnects; nothing here waits.
        client.connect_async(host, port, keepalive=keepalive_s)
        client.loop_start()
        self._worker = threading.Thread(target=self._run, name=f"mqtt-sink:{host}:{port}", daemon=True)
        self._worker.start()

    # public ----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def discovery_topic(self, camera_id: str) -> str:
        return f"{self.discovery_prefix}/binary_sensor/{self.node_id}_{_object_id(camera_id)}/config"

    def state_topic(self, camera_id: str) -> str:
        return f"{self.prefix}/{camera_id}/violence"

    def submit(self, event: Mapping[str, Any] | AlertEvent) -> None:
        """Queue the event (and the camera's state change); returns at once. A malformed event raises
        ValueError/TypeError; a full queue or a closed sink drops it (counted)."""
        data = event_dict(event)
        key = idempotency_key(data)
        camera = data.get("camera_id")
        if not isinstance(camera, str) or not camera:
            raise InvalidInputError(f"event {key} needs a non-empty string 'camera_id', got {camera!r}")
        try:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"event {key} is not JSON-serialisable: {exc}") from exc
        with self._lock:
            self._counts["submitted"] += 1
            if not self._accepting:
                self._counts["dropped"] += 1
                logger.warning("mqtt sink closed; event %s not published", key)
                return
        messages = []
        if self._add_camera(camera) and self.discovery:  # a wall cell first seen in an event
            messages.append(_Message(self.discovery_topic(camera), self._discovery_payload(camera), True, key))
        messages.append(_Message(self.events_topic, body, False, key))
        state = self._state_after(camera, str(data["event_id"]), str(data["kind"]))
        if state is not None:
            messages.append(_Message(self.state_topic(camera), state.encode(), True, key))
        for message in messages:
            self._enqueue(message)

    def stats(self) -> dict[str, int]:
        """``submitted`` events; ``delivered`` messages acknowledged by the broker (QoS 1), ``dropped``
        messages (queue full, sink closed, broker away at close); ``pending`` messages not yet handed to
        the client; ``connects`` successful (re)connects; ``connected`` 0/1."""
        with self._lock:
            self._reap()
            out = dict(self._counts)
            out["pending"] = self._pending
        out["connected"] = int(self.connected)
        return out

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting events, publish what is queued for up to ``timeout_s`` (while connected),
        publish ``offline`` (a clean disconnect sends no last will), disconnect. Idempotent."""
        with self._lock:
            first = self._accepting
            self._accepting = False
        if not first:
            return
        deadline = time.monotonic() + max(0.0, timeout_s)
        while time.monotonic() < deadline and self.connected:
            with self._lock:
                if self._pending == 0:
                    break
            time.sleep(0.01)
        self._stop.set()
        self._worker.join(1.0)
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        with self._lock:
            self._counts["dropped"] += dropped
            self._pending = max(0, self._pending - dropped)
        if dropped:
            logger.warning("mqtt sink closed with %d message(s) unpublished (broker away)", dropped)
        if self.connected:
            # QoS 1 acks come in order: once `offline` is acknowledged, everything before it is too.
            info = self._client.publish(self.availability_topic, OFFLINE, qos=_QOS, retain=True)
            try:
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                logger.warning("mqtt offline not published at close: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        logger.info("mqtt sink %s:%d closed: %s", self.host, self.port, self.stats())

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # state -----------------------------------------------------------------------------------

    def _add_camera(self, camera: str) -> bool:
        with self._lock:
            if camera in self._states:
                return False
            self._cameras.append(camera)
            self._states[camera] = OFF
            self._open[camera] = set()
            return True

    def _state_after(self, camera: str, event_id: str, kind: str) -> str | None:
        """The camera's new ON/OFF state after this event, or None when unchanged (updates)."""
        with self._lock:
            alerting = self._open[camera]
            if kind == "end":
                alerting.discard(event_id)
            else:
                alerting.add(event_id)
            state = ON if alerting else OFF
            if kind != "update" or self._states[camera] != state:
                self._states[camera] = state
                return state
            return None

    def _discovery_payload(self, camera: str) -> bytes:
        oid = _object_id(camera)
        config = {
            "name": "Violence",
            "unique_id": f"{self.node_id}_{oid}_violence",
            "object_id": f"{self.node_id}_{oid}_violence",
            "device_class": "safety",
            "state_topic": self.state_topic(camera),
            "payload_on": ON,
            "payload_off": OFF,
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": {
                "identifiers": [f"{self.node_id}_{oid}"],
                "name": f"NexaraVision {camera}",
                "manufacturer": "NexaraVision",
                "model": "violence detection",
            },
        }
        return json.dumps(config, separators=(",", ":")).encode("utf-8")

    # threads ---------------------------------------------------------------------------------

    def _enqueue(self, message: _Message) -> None:
        with self._lock:
            self._pending += 1
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
            if _is_power_of_ten(dropped):  # a broker away for long must not flood the log
                logger.warning(
                    "mqtt queue full (%d): %s of event %s dropped (%d dropped so far)",
                    self._queue.maxsize,
                    message.topic,
                    message.key,
                    dropped,
                )

    def _run(self) -> None:
        """The only thread that publishes while open (paho's network thread only reads and writes the
        socket), so every message's id is recorded before its acknowledgement can be counted."""
        while not self._stop.is_set():
            if not self._connected.wait(0.2):
                continue  # held in the queue while the broker is away
            if self._announce.is_set():
                self._announce.clear()
                self._publish_announcements()
            with self._lock:
                self._reap()
                backlog = len(self._in_flight)
            if backlog >= self._queue.maxsize:
                time.sleep(0.02)  # a broker that does not acknowledge: hold here, the queue bounds the rest
                continue
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._publish(message.topic, message.payload, retain=message.retain, counted=True)
            except Exception as exc:  # never let the worker die: the drop must still be counted
                logger.error("mqtt publish of %s (event %s) failed: %r", message.topic, message.key, exc)
                with self._lock:
                    self._counts["dropped"] += 1
            finally:
                with self._lock:
                    self._pending -= 1

    def _publish(self, topic: str, payload: bytes | str, *, retain: bool, counted: bool) -> None:
        info = self._client.publish(topic, payload, qos=_QOS, retain=retain)
        # NO_CONN: the connection dropped meanwhile; paho keeps the QoS 1 message and resends it.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(mqtt.error_string(info.rc))
        with self._lock:
            self._in_flight[info.mid] = counted

    def _publish_announcements(self) -> None:
        """``online``, the discovery configs and the current states, on every (re)connect."""
        with self._lock:
            states = [(c, self._states[c]) for c in self._cameras]
        try:
            self._publish(self.availability_topic, ONLINE, retain=True, counted=False)
            for camera, state in states:
                if self.discovery:
                    self._publish(
                        self.discovery_topic(camera), self._discovery_payload(camera), retain=True, counted=False
                    )
                self._publish(self.state_topic(camera), state, retain=True, counted=False)
        except RuntimeError as exc:
            logger.error("mqtt announcements not published: %s", exc)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.warning("mqtt broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        with self._lock:
            self._counts["connects"] += 1
        logger.info("mqtt connected to %s:%d", self.host, self.port)
        client.subscribe(self.availability_topic, qos=_QOS)  # the other sources' offline (module doc)
        self._announce.set()  # before the worker may publish anything else
        self._connected.set()

    def _on_availability(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            open_ = self._accepting
        if open_ and message.payload == OFFLINE.encode():
            self._announce.set()  # another source left (or this one's stale will): say online again

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            logger.warning("mqtt connection to %s:%d lost (%s); reconnecting", self.host, self.port, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Never call paho under self._lock: paho may hold its own lock while calling back here.
        with self._lock:
            self._acked.add(mid)

    def _reap(self) -> None:
        """Count acknowledged messages (caller holds the lock). An acknowledgement may arrive before the
        worker recorded the message's id: it waits in the set until then."""
        for mid in [m for m in self._acked if m in self._in_flight]:
            self._acked.discard(mid)
            self._counts["delivered"] += self._in_flight.pop(mid)


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
