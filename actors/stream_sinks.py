"""The delivery sinks of one source built from the resolved config: the webhook (``sinks.webhook``, its
dead-letter file in the run folder) and MQTT (``sinks.mqtt``). Secrets come from the environment
variables the config names."""

from __future__ import annotations

import os
from pathlib import Path

from actors.sinks import Sink, parse_secrets
from nexara.config import ResolvedCamera, expand_env
from nexara.config.live import MqttConfig, WebhookConfig
from nexara.errors import ConfigError

__all__ = ["WEBHOOK_DEAD_LETTER", "WEBHOOK_DELIVERED", "mqtt_sink", "webhook_sink"]

WEBHOOK_DEAD_LETTER = "webhook-dead-letter.jsonl"
WEBHOOK_DELIVERED = "webhook-delivered.log"  # idempotency keys delivered (actors.recovery)


def webhook_sink(w: WebhookConfig, run: Path) -> Sink:
    """The webhook sink of ``sinks.webhook``; its dead-letter file goes in the run folder ``run``."""
    from actors.webhook import WebhookSink

    secrets = None
    if w.secret_env:
        value = os.environ.get(w.secret_env)
        if not value:
            raise ConfigError(f"sinks.webhook.secret_env names {w.secret_env}, which is not set")
        secrets = parse_secrets(value)  # several during key rotation, newest first
    return WebhookSink(
        expand_env(w.url),
        secret=secrets,
        timeout_s=w.timeout_s,
        max_attempts=w.max_attempts,
        backoff_initial_s=w.backoff_initial_s,
        backoff_max_s=w.backoff_max_s,
        dead_letter_path=run / WEBHOOK_DEAD_LETTER,
        delivered_path=run / WEBHOOK_DELIVERED,
    )


def mqtt_sink(m: MqttConfig, camera: ResolvedCamera) -> Sink:
    """The MQTT sink of ``sinks.mqtt`` for one source. Its cameras (the source, or a wall's named
    cells) are announced to Home Assistant at connect; other cells when their first event comes."""
    from actors.mqtt import MqttSink, MqttTls

    password = None
    if m.password_env:
        password = os.environ.get(m.password_env)
        if not password:
            raise ConfigError(f"sinks.mqtt.password_env names {m.password_env}, which is not set")
    g = camera.camera.grid
    cameras = list(g.cell_ids) if g.cell_ids else ([camera.id] if g.cell_count == 1 else [])
    tls = None
    if m.uses_tls:
        tls = MqttTls(
            ca_file=m.tls_ca_file, cert_file=m.tls_cert_file, key_file=m.tls_key_file, insecure=m.tls_insecure
        )
    return MqttSink(
        expand_env(m.host),
        m.port,
        client_id=m.client_id or f"{m.node_id}-{camera.id}",
        topic_prefix=m.topic_prefix,
        cameras=cameras,
        discovery=m.discovery,
        discovery_prefix=m.discovery_prefix,
        node_id=m.node_id,
        username=m.username,
        password=password,
        tls=tls,
        keepalive_s=m.keepalive_s,
        queue_size=m.queue_size,
        reconnect_max_s=m.reconnect_max_s,
    )
