"""actors.mqtt against a real mosquitto (Debian's package) that each test starts on a free loopback port:
retained availability and last will, Home Assistant discovery per camera, events in order and never
retained, ON/OFF state retained, user/password, a broker that is down or restarts."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from actors.mqtt import MqttSink, MqttTls

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402

PREFIX = "nx-test"
DISCOVERY = "ha"
INSTALL = (
    "mosquitto is not installed: run `apt-get install mosquitto` (Debian's broker, as root after `apt-get update`);"
    " the MQTT sink is tested against a real broker"
)


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        pytest.fail(INSTALL)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached in {timeout_s}s")
        time.sleep(0.02)


@dataclass
class Broker:
    """One mosquitto process on 127.0.0.1:port (no persistence: a restart loses retained messages)."""

    folder: Path
    port: int
    password_file: Path | None = None
    extra: list[str] = field(default_factory=list)  # more lines for the listener (TLS)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        conf = self.folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if self.password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        lines += self.extra
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([tool("mosquitto"), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, what="mosquitto listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Subscriber:
    """A paho client recording (topic, payload, retain) of everything under the test's prefixes."""

    port: int
    auth: tuple[str, str] | None = None
    messages: list[tuple[str, str, bool]] = field(default_factory=list)

    def start(self) -> Subscriber:
        subscribed = threading.Event()
        lock = threading.Lock()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        if self.auth:
            client.username_pw_set(*self.auth)

        def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
            c.subscribe([(f"{PREFIX}/#", 1), (f"{DISCOVERY}/#", 1)])

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            with lock:
                self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert subscribed.wait(10), "subscriber did not subscribe"
        self.client = client
        return self

    def payloads(self, topic: str) -> list[str]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def retained(self, settle_s: float = 0.3) -> dict[str, str]:
        """Topic -> payload of the retained messages a new subscriber got (call on a fresh one)."""
        time.sleep(settle_s)
        return {t: p for t, p, r in list(self.messages) if r}

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    todo: list[Callable[[], None]] = []
    yield todo
    for f in reversed(todo):
        f()


def broker(tmp_path: Path, cleanup: list[Callable[[], None]], **kw: object) -> Broker:
    b = Broker(tmp_path, free_port(), **kw).start()  # type: ignore[arg-type]
    cleanup.append(b.stop)
    return b


def subscriber(port: int, cleanup: list[Callable[[], None]], auth: tuple[str, str] | None = None) -> Subscriber:
    s = Subscriber(port, auth).start()
    cleanup.append(s.stop)
    return s


def retained(
    port: int, want: dict[str, str | None], auth: tuple[str, str] | None = None, timeout_s: float = 10.0
) -> dict[str, str]:
    """The retained messages a new subscriber gets, once they hold ``want`` (topic -> payload, None: any):
    a message published while a subscriber subscribes comes live (not flagged retained), so look again."""
    end = time.monotonic() + timeout_s
    while True:
        sub = Subscriber(port, auth).start()
        try:
            got = sub.retained()
        finally:
            sub.stop()
        if all(t in got and (v is None or got[t] == v) for t, v in want.items()):
            return got
        if time.monotonic() > end:
            raise AssertionError(f"retained {want} not reached in {timeout_s}s: {got}")


def sink(port: int, cleanup: list[Callable[[], None]], **kw: object) -> MqttSink:
    args: dict[str, object] = {"client_id": f"nx-{uuid.uuid4().hex[:8]}", "topic_prefix": PREFIX}
    args.update(discovery_prefix=DISCOVERY, node_id="nx", reconnect_max_s=1.0, **kw)
    s = MqttSink("127.0.0.1", port, **args)  # type: ignore[arg-type]
    cleanup.append(lambda: s.close(timeout_s=1))
    return s


def test_availability_discovery_events_and_state(tmp_path: Path, cleanup: list[Callable[[], None]]) -> None:
    b = broker(tmp_path, cleanup)
    live = subscriber(b.port, cleanup)
    s = sink(b.port, cleanup, cameras=["cam-1", "wall.r0c1"])
    wait_until(lambda: live.payloads(f"{PREFIX}/available") == ["online"], what="online")

    topics = [f"{DISCOVERY}/binary_sensor/nx_{oid}/config" for oid in ("cam-1", "wall_r0c1")]
    want: dict[str, str | None] = {f"{PREFIX}/cam-1/violence": "OFF", f"{PREFIX}/wall.r0c1/violence": "OFF"}
    got = retained(b.port, {f"{PREFIX}/available": "online", **want, **dict.fromkeys(topics)})
    for camera, oid in (("cam-1", "cam-1"), ("wall.r0c1", "wall_r0c1")):
        config = json.loads(got[f"{DISCOVERY}/binary_sensor/nx_{oid}/config"])
        assert config["device_class"] == "safety"
        assert config["unique_id"] == f"nx_{oid}_violence"
        assert config["state_topic"] == f"{PREFIX}/{camera}/violence"
        assert config["availability_topic"] == f"{PREFIX}/available"
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")

    events = [make_event(1), make_event(1, kind="update", seq=1), make_event(1, kind="end", seq=2)]
    events.append(make_event(2, camera_id="cam-9"))  # a camera first seen in an event
    for e in events:
        s.submit(e)
    wait_until(lambda: len(live.payloads(f"{PREFIX}/events")) == 4, what="4 events")
    assert [json.loads(p) for p in live.payloads(f"{PREFIX}/events")] == [e.to_dict() for e in events]
    wait_until(lambda: live.payloads(f"{PREFIX}/cam-9/violence") == ["ON"], what="cam-9 ON")
    assert live.payloads(f"{PREFIX}/cam-1/violence") == ["OFF", "ON", "OFF"]  # connect, start, end

    cam9 = f"{DISCOVERY}/binary_sensor/nx_cam-9/config"
    got = retained(b.port, {f"{PREFIX}/cam-1/violence": "OFF", f"{PREFIX}/cam-9/violence": "ON", cam9: None})
    assert json.loads(got[cam9])["unique_id"] == "nx_cam-9_violence"
    assert f"{PREFIX}/events" not in got  # events are never retained
    wait_until(lambda: s.stats()["delivered"] == 8, what="8 acknowledged")  # 4 events, 3 states, 1 discovery

    s.close(timeout_s=5)
    wait_until(lambda: live.payloads(f"{PREFIX}/available")[-1:] == ["offline"], what="offline")
    retained(b.port, {f"{PREFIX}/available": "offline"})
    assert s.stats() == {"submitted": 4, "delivered": 8, "dropped": 0, "connects": 1, "pending": 0, "connected": 0}
    s.submit(make_event(3))  # after close: counted, not published
    assert s.stats()["dropped"] == 1


def test_availability_stays_online_while_any_source_runs(tmp_path: Path, cleanup: list[Callable[[], None]]) -> None:
    b = broker(tmp_path, cleanup)
    live = subscriber(b.port, cleanup)
    first = sink(b.port, cleanup, cameras=["cam-1"])
    second = sink(b.port, cleanup, cameras=["cam-2"])  # another source: its own connection, same prefix
    wait_until(lambda: first.connected and second.connected, what="both connected")
    first.close(timeout_s=5)  # one camera removed: the other answers its offline
    wait_until(lambda: live.payloads(f"{PREFIX}/available")[-2:] == ["offline", "online"], what="online again")
    retained(b.port, {f"{PREFIX}/available": "online"})
    second.close(timeout_s=5)  # the last one gone: offline stays
    retained(b.port, {f"{PREFIX}/available": "offline"})
    time.sleep(0.3)
    assert live.payloads(f"{PREFIX}/available")[-1] == "offline"


def test_last_will_marks_offline_when_the_process_dies(tmp_path: Path, cleanup: list[Callable[[], None]]) -> None:
    b = broker(tmp_path, cleanup)
    live = subscriber(b.port, cleanup)
    code = (
        "import sys, time\nfrom actors.mqtt import MqttSink\n"
        f"s = MqttSink('127.0.0.1', {b.port}, client_id='dying', topic_prefix='{PREFIX}', cameras=['cam-1'])\n"
        "while not s.connected: time.sleep(0.02)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    cleanup.append(lambda: None if proc.poll() is not None else proc.kill())
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    wait_until(lambda: live.payloads(f"{PREFIX}/available") == ["online"], what="online")
    os.kill(proc.pid, signal.SIGKILL)  # no clean close: only the broker can say offline
    proc.wait(10)
    wait_until(lambda: live.payloads(f"{PREFIX}/available") == ["online", "offline"], what="last will")
    retained(b.port, {f"{PREFIX}/available": "offline"})


def test_user_and_password(tmp_path: Path, cleanup: list[Callable[[], None]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password_file = tmp_path / "passwd"
    subprocess.run([tool("mosquitto_passwd"), "-b", "-c", str(password_file), "nexara", "pw-Secr3t!"], check=True)
    b = broker(tmp_path, cleanup, password_file=password_file)
    s = sink(b.port, cleanup, cameras=["cam-1"], username="nexara", password="pw-Secr3t!")
    wait_until(lambda: s.connected, what="connected with the password")
    s.submit(make_event(1))
    want: dict[str, str | None] = {f"{PREFIX}/available": "online", f"{PREFIX}/cam-1/violence": "ON"}
    retained(b.port, want, auth=("nexara", "pw-Secr3t!"))

    wrong = sink(b.port, cleanup, cameras=["cam-1"], username="nexara", password="not-it-0")
    time.sleep(1.5)
    assert not wrong.connected and wrong.stats()["connects"] == 0
    wrong.submit(make_event(2))  # held, never blocks
    assert wrong.stats()["pending"] == 2
    s.close(timeout_s=5)
    wrong.close(timeout_s=0.2)
    assert wrong.stats()["dropped"] == 2 and wrong.stats()["pending"] == 0
    assert "pw-Secr3t!" not in caplog.text and "not-it-0" not in caplog.text
    with pytest.raises(ValueError, match="username"):
        MqttSink("127.0.0.1", b.port, client_id="x", password="p")


def test_broker_down_never_blocks_and_reconnects(tmp_path: Path, cleanup: list[Callable[[], None]]) -> None:
    port = free_port()  # nothing listens yet
    s = sink(port, cleanup, cameras=["cam-1"], queue_size=5)
    waits = []
    for i in range(50):
        t0 = time.perf_counter()
        s.submit(make_event(i))  # each start: the event and the state ON
        waits.append(time.perf_counter() - t0)
    assert max(waits) < 0.05, f"submit waited {max(waits):.3f}s"
    stats = s.stats()
    assert (stats["submitted"], stats["pending"], stats["dropped"], stats["connected"]) == (50, 5, 95, 0)

    b = Broker(tmp_path, port).start()  # the broker comes up: the sink connects and sends what it held
    cleanup.append(b.stop)
    wait_until(lambda: s.stats()["delivered"] == 5, timeout_s=15, what="held messages delivered")
    assert s.stats()["connects"] == 1 and s.stats()["pending"] == 0
    retained(port, {f"{PREFIX}/available": "online", f"{PREFIX}/cam-1/violence": "ON"})

    b.stop()  # a restart without persistence loses every retained message ...
    wait_until(lambda: not s.connected, what="disconnect seen")
    t0 = time.perf_counter()
    s.submit(make_event(60, kind="end", seq=1))
    assert time.perf_counter() - t0 < 0.05
    b.start()
    wait_until(lambda: s.stats()["connects"] == 2, timeout_s=15, what="reconnect")
    # ... and the sink publishes them again
    retained(port, {f"{PREFIX}/available": "online", f"{DISCOVERY}/binary_sensor/nx_cam-1/config": None})
    wait_until(lambda: s.stats()["pending"] == 0, what="held end delivered")

    t0 = time.perf_counter()
    s.close(timeout_s=5)
    assert time.perf_counter() - t0 < 5


def test_built_from_the_config(
    tmp_path: Path, cleanup: list[Callable[[], None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.stream_sinks import mqtt_sink
    from nexara.config import parse_config
    from nexara.errors import ConfigError

    password_file = tmp_path / "passwd"
    subprocess.run([tool("mosquitto_passwd"), "-b", "-c", str(password_file), "nexara", "pw-from-env"], check=True)
    b = broker(tmp_path, cleanup, password_file=password_file)
    mqtt_yaml = (
        f"sinks:\n  mqtt: {{host: '${{NX_MQTT_HOST}}', port: {b.port}, topic_prefix: {PREFIX}, "
        f"discovery_prefix: {DISCOVERY}, username: nexara, password_env: NX_MQTT_PW}}\n"
    )
    cfg = parse_config(mqtt_yaml + "cameras:\n  - id: lobby\n    url: a.mp4\n")
    camera = cfg.resolve_camera("lobby")
    assert camera.sinks.mqtt is not None
    monkeypatch.setenv("NX_MQTT_HOST", "127.0.0.1")
    with pytest.raises(ConfigError, match="NX_MQTT_PW"):
        mqtt_sink(camera.sinks.mqtt, camera)
    monkeypatch.setenv("NX_MQTT_PW", "pw-from-env")
    s = mqtt_sink(camera.sinks.mqtt, camera)
    assert isinstance(s, MqttSink)
    cleanup.append(lambda: s.close(timeout_s=1))
    wait_until(lambda: s.connected, what="connected from the config")
    config = f"{DISCOVERY}/binary_sensor/nexara_lobby/config"
    got = retained(b.port, {config: None}, auth=("nexara", "pw-from-env"))
    assert json.loads(got[config])["unique_id"] == "nexara_lobby_violence"

    for bad, key in (
        ("{host: h, password_env: X}", "sinks.mqtt.password_env"),
        ("{host: h, tls_cert_file: c.pem}", "sinks.mqtt.tls_cert_file"),
        ("{host: h, topic_prefix: 'a/#'}", "sinks.mqtt.topic_prefix"),
        ("{host: h, port: 0}", "sinks.mqtt.port"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config(f"sinks:\n  mqtt: {bad}\n")


def make_certs(folder: Path) -> dict[str, Path]:
    """A test CA, two server certificates (for 127.0.0.1, and for another host name) and a client
    certificate, EC keys (fast), made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: `apt-get install -y openssl` (the MQTT TLS test makes its certificates)")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, cwd=folder, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=nx-test-ca")
    for name, san in (("server", "IP:127.0.0.1"), ("elsewhere", "DNS:elsewhere.example"), ("client", None)):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=nx-{name}")
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n" if san else "extendedKeyUsage=clientAuth\n")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
        )  # fmt: skip
    return {p.stem + p.suffix: p for p in folder.iterdir()}


def tls_broker(folder: Path, cleanup: list[Callable[[], None]], certs: dict[str, Path], server: str) -> Broker:
    folder.mkdir()
    b = Broker(
        folder,
        free_port(),
        extra=[
            f"cafile {certs['ca.crt']}",
            f"certfile {certs[server + '.crt']}",
            f"keyfile {certs[server + '.key']}",
            "require_certificate true",
        ],
    ).start()
    cleanup.append(b.stop)
    return b


def test_tls_with_client_certificate(tmp_path: Path, cleanup: list[Callable[[], None]]) -> None:
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    certs = make_certs(certs_dir)
    b = tls_broker(tmp_path / "b1", cleanup, certs, "server")
    other = tls_broker(tmp_path / "b2", cleanup, certs, "elsewhere")  # its certificate names another host
    full = MqttTls(ca_file=str(certs["ca.crt"]), cert_file=str(certs["client.crt"]), key_file=str(certs["client.key"]))

    good = sink(b.port, cleanup, cameras=["cam-1"], tls=full)
    no_client_cert = sink(b.port, cleanup, cameras=["cam-1"], tls=MqttTls(ca_file=str(certs["ca.crt"])))
    wrong_host = sink(other.port, cleanup, cameras=["cam-1"], tls=full)
    wrong_host_insecure = sink(other.port, cleanup, cameras=["cam-1"], tls=replace(full, insecure=True))
    wait_until(lambda: good.connected and wrong_host_insecure.connected, what="TLS connections")
    good.submit(make_event(1))
    wait_until(lambda: good.stats()["delivered"] == 2, what="published over TLS")
    time.sleep(1.0)
    assert not no_client_cert.connected and no_client_cert.stats()["connects"] == 0  # the broker requires one
    assert not wrong_host.connected and wrong_host.stats()["connects"] == 0  # host name checked
    no_client_cert.submit(make_event(2))  # never blocks
    assert no_client_cert.stats()["pending"] == 2
