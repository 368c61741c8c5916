"""Sections of the live path: cameras (sources and monitor-wall grids), windows, confirmation, the Serve
app and the sinks; and :class:`ResolvedCamera`, what one source's live path receives."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from nexara.config.base import (
    ALERT_TIERS,
    ID_PATTERN,
    Frozen,
    Model,
    RuleError,
    check_tiers,
    error_loc,
    error_msg,
)
from nexara.config.upkeep import QualitySection
from nexara.source_policy import (
    DEFAULT_DEMUXERS,
    DEFAULT_DENIED_NETWORKS,
    DEFAULT_DENIED_PORTS,
    DEFAULT_OPTIONS,
    DEFAULT_SCHEMES,
    parse_network,
)


class GridConfig(Frozen):
    """How one source is split into cells (a monitor wall). 1x1 = a plain camera."""

    mode: Literal["fixed", "auto"] = Field(
        "fixed", description="fixed: rows x cols with margins; auto: detect the cell boxes from the first frames."
    )
    rows: int = Field(1, ge=1, le=16, description="Grid rows (mode fixed).")
    cols: int = Field(1, ge=1, le=16, description="Grid columns (mode fixed).")
    margin_px: int = Field(0, ge=0, le=200, description="Pixels trimmed inside every cell border (separator lines).")
    boxes: list[tuple[int, int, int, int]] | None = Field(
        None,
        description="Explicit cell boxes (x, y, w, h) in wall pixels, row-major; written by `nexara grid detect --write`.",  # noqa: E501
    )
    cell_ids: list[str] | None = Field(
        None, description="Camera id of each cell, row-major (default: <source id>-r<row>c<col>)."
    )
    no_signal_check_s: float = Field(
        2.0, gt=0, le=3600, description="A cell black or frozen this long is reported as no signal and not scored."
    )

    @property
    def cell_count(self) -> int | None:
        """Cells this grid makes; None while they are detected from the frames (mode auto)."""
        if self.boxes:
            return len(self.boxes)
        return None if self.mode == "auto" else self.rows * self.cols

    @model_validator(mode="after")
    def _check(self) -> GridConfig:
        for i, (x, y, w, h) in enumerate(self.boxes or ()):
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise RuleError(("boxes", i), f"box {i} ({x}, {y}, {w}, {h}) needs x, y >= 0 and w, h >= 1")
        if self.cell_ids is not None:
            for i, cid in enumerate(self.cell_ids):
                if not re.match(ID_PATTERN, cid):
                    raise RuleError(("cell_ids", i), f"cell id {cid!r}: letters, digits, '_', '.', '-'")
            count = self.cell_count
            if count is not None and len(self.cell_ids) != count:
                raise RuleError("cell_ids", f"{len(self.cell_ids)} cell ids for {count} cells")
        return self


class SourcePolicySection(Frozen):
    """Which sources a camera added over the HTTP API may name (:mod:`nexara.source_policy`). Cameras of
    the config file are the operator's and are not checked (unless they set ``source_policy`` themselves)."""

    schemes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCHEMES), description="URL schemes allowed (files: see file_roots)."
    )
    file_roots: list[str] = Field(
        default_factory=list, description="Absolute folders whose files may be opened (default: no local file)."
    )
    denied_networks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_NETWORKS),
        description="Networks no address of a source host may lie in: loopback, link-local, cloud metadata...",
    )
    allowed_networks: list[str] = Field(
        default_factory=list, description="Exceptions to denied_networks (e.g. 127.0.0.1/32 for a local test server)."
    )
    denied_ports: list[int] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_PORTS), description="Ports refused on every host (Ray's own)."
    )
    formats: list[str] = Field(
        default_factory=list, description="FFmpeg input formats (devices: v4l2, x11grab...) a caller may use."
    )
    options: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OPTIONS), description="FFmpeg option keys a caller may set."
    )
    demuxers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DEMUXERS),
        min_length=1,
        description="FFmpeg demuxers a checked source may be read with (video containers, not tty or image2).",
    )

    @model_validator(mode="after")
    def _check_policy(self) -> SourcePolicySection:
        for i, scheme in enumerate(self.schemes):
            if scheme != scheme.lower() or not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme) or scheme == "file":
                raise RuleError(("schemes", i), f"{scheme!r}: a lower-case URL scheme; local files go in file_roots")
        for i, root in enumerate(self.file_roots):
            if not root.startswith("/"):
                raise RuleError(("file_roots", i), f"{root!r} must be an absolute folder")
        for key in ("denied_networks", "allowed_networks"):
            for i, net in enumerate(getattr(self, key)):
                try:
                    parse_network(net)
                except ValueError as exc:
                    raise RuleError((key, i), str(exc)) from None
        for i, port in enumerate(self.denied_ports):
            if not 0 < port < 65_536:
                raise RuleError(("denied_ports", i), f"{port} is not a TCP port")
        return self


class SourceSettings(Frozen):
    """Where a source's video comes from and how to keep reading it (the reader's part of a camera)."""

    url: str = Field(min_length=1, description="File path, any URL PyAV opens (rtsp/http/hls), or a capture device.")
    pacing: Literal["realtime", "fast"] = Field(
        "realtime", description="Files: realtime paces frames at their timestamps; fast reads as fast as possible."
    )
    loop: bool = Field(False, description="Files: start again at the end (stream time keeps increasing).")
    format: str | None = Field(None, description="Input format for devices, e.g. x11grab for a screen capture.")
    options: dict[str, str] = Field(default_factory=dict, description="ffmpeg/PyAV input options.")
    reconnect: bool | None = Field(
        None, description="Reconnect after a drop, a read timeout or the end of a URL (default: URLs yes, files no)."
    )
    max_reconnects: int | None = Field(
        None, ge=0, le=1_000_000, description="Give up after this many (default: never)."
    )
    backoff_initial_s: float = Field(
        0.5, gt=0, le=3600, description="First reconnect delay; doubles up to backoff_max_s."
    )
    backoff_max_s: float = Field(30.0, gt=0, le=86_400, description="Longest reconnect delay (full jitter below it).")
    source_policy: SourcePolicySection | None = Field(
        None,
        description="Checked before every (re)connect; the HTTP API sets it to serve.source_policy (config cameras: unset).",  # noqa: E501
    )

    @model_validator(mode="after")
    def _check_source(self) -> SourceSettings:
        if not self.url.strip():
            raise RuleError("url", "url must be a path, a URL or a device, not blank")
        if self.format is not None and not self.format.strip():
            raise RuleError("format", "format must be an FFmpeg input format name (e.g. 'x11grab') or unset")
        if self.loop:
            from nexara.media import source_label, url_scheme  # only when looping: keeps validation light

            if self.format is not None or url_scheme(self.url) is not None:
                raise RuleError(
                    "loop", f"loop needs a local file, not {source_label(self.url)!r} (URLs reconnect instead)"
                )
        if self.backoff_max_s < self.backoff_initial_s:
            raise RuleError(
                "backoff_max_s",
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s ({self.backoff_initial_s})",
            )
        return self


class WindowsConfig(Frozen):
    """How live streams are cut into scored windows."""

    window_s: float = Field(
        2.0, gt=0.2, le=60, description="Window length, seconds (the training clips are ~2 s long)."
    )
    stride_s: float = Field(1.0, gt=0, le=60, description="Hop between windows while quiet, seconds.")
    alert_stride_s: float = Field(
        0.5, gt=0, le=60, description="Hop while a cell's score is above pre_alert (adaptive sampling)."
    )
    pre_alert: float = Field(0.25, ge=0, le=1, description="Score above which a cell is sampled at alert_stride_s.")
    max_in_flight: int = Field(2, ge=1, le=64, description="Windows of one source being scored at once.")
    max_queued: int = Field(
        4, ge=1, le=1024, description="Windows waiting per source; when full the OLDEST is dropped and counted."
    )
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Seconds before a scoring request is retried.")
    max_attempts: int = Field(
        6, ge=1, le=100, description="Attempts per window, with backoff (a replica that dies is retried)."
    )
    cut_guard: bool = Field(
        True,
        description="Detect cuts (scene changes, loop seams, DVR camera switches) and restart the motion "
        "statistics after them: flow across a cut looks like violent motion.",
    )
    cut_min_diff: float = Field(12.0, gt=0, le=255, description="Mean gray difference a cut must exceed.")
    cut_ratio: float = Field(4.0, gt=1, le=100, description="...and this multiple of the recent median difference.")

    @model_validator(mode="after")
    def _check(self) -> WindowsConfig:
        if self.alert_stride_s > self.stride_s:
            raise RuleError(
                "alert_stride_s", f"alert_stride_s ({self.alert_stride_s}) must be <= stride_s ({self.stride_s})"
            )
        return self


class ConfirmationSection(Frozen):
    """Temporal confirmation per cell (k of n windows to start, hysteresis to end)."""

    enter_threshold: float = Field(0.6, ge=0, le=1, description="Window probability counting toward a start.")
    exit_threshold: float = Field(0.4, ge=0, le=1, description="Below this for exit_windows windows ends an alert.")
    k: int = Field(2, ge=1, le=100, description="Windows at or above enter_threshold among the last n to start.")
    n: int = Field(3, ge=1, le=100, description="Window history length for the k-of-n rule.")
    exit_windows: int = Field(3, ge=1, le=100, description="Consecutive quiet windows that end an alert.")
    cooldown_s: float = Field(10.0, ge=0, le=86_400, description="No new alert on a cell this long after one ends.")
    max_event_s: float = Field(300.0, gt=0, le=86_400, description="An alert longer than this is ended.")
    update_every_s: float = Field(5.0, ge=0, le=86_400, description="Seconds between update events of an alert.")
    tiers: dict[str, float] = Field(
        default_factory=lambda: dict(ALERT_TIERS),
        description="Alert tier by peak probability: the highest threshold at or below the peak wins.",
    )

    @model_validator(mode="after")
    def _check(self) -> ConfirmationSection:
        if not self.exit_threshold < self.enter_threshold:
            raise RuleError(
                "exit_threshold",
                f"exit_threshold ({self.exit_threshold}) must be < enter_threshold ({self.enter_threshold})",
            )
        if self.k > self.n:
            raise RuleError("k", f"k ({self.k}) must be <= n ({self.n})")
        check_tiers(self.tiers)
        return self

    def tier_for(self, peak_probability: float) -> str:
        """The tier of an alert peaking at ``peak_probability`` (below every threshold: the lowest tier)."""
        ranked = sorted(self.tiers.items(), key=lambda item: item[1], reverse=True)
        for name, threshold in ranked:
            if peak_probability >= threshold:
                return name
        return ranked[-1][0]


class CameraConfig(SourceSettings):
    """One source: a camera URL, a file, or a screen recording of a monitor wall. ``windows`` and
    ``confirmation`` override keys of the global sections for this source (and its cells) only."""

    id: str = Field(pattern=ID_PATTERN, description="Camera (or wall) id: letters, digits, '_', '.', '-'.")
    grid: GridConfig = Field(default_factory=GridConfig)  # type: ignore[arg-type]
    windows: dict[str, Any] = Field(
        default_factory=dict, description="Keys of the global `windows` section overridden for this camera."
    )
    confirmation: dict[str, Any] = Field(
        default_factory=dict, description="Keys of the global `confirmation` section overridden for this camera."
    )


def override_section(section: BaseModel, override: Mapping[str, Any], key: tuple[str | int, ...]) -> Any:
    """``section`` with ``override`` applied, validated as a whole (cross-field rules included)."""
    if not override:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **override})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RuleError((*key, *error_loc(err)), error_msg(err)) from None


@dataclass(frozen=True, slots=True)
class ResolvedCamera:
    """Everything one source's live path reads, resolved from the schema: the camera, its effective
    ``windows`` and ``confirmation`` (global merged with the camera's overrides), and the global settings
    it needs. Built by :meth:`NexaraConfig.resolve_camera`; frozen, picklable, no dicts of the config."""

    camera: CameraConfig
    windows: WindowsConfig
    confirmation: ConfirmationSection
    read_timeout_s: float
    sinks: SinksSection
    model_dir: str | None
    quality: QualitySection = field(default_factory=QualitySection)  # type: ignore[arg-type]

    @property
    def id(self) -> str:
        return self.camera.id

    @property
    def evidence_lag_s(self) -> float:
        """How far back evidence packets are kept: the reader runs ahead of the verdicts by up to the
        queued + in-flight windows, and an alert is confirmed up to n windows after its start."""
        w = self.windows
        return w.window_s + (w.max_queued + w.max_in_flight + self.confirmation.n) * w.stride_s + 10.0


class BatchConfig(Model):
    max_batch_size: int = Field(8, ge=1, le=1024, description="Requests per @serve.batch call.")
    batch_wait_timeout_s: float = Field(0.02, ge=0, le=10, description="Seconds a batch waits to fill.")


class BackboneServeConfig(BatchConfig):
    """The batched backbone deployment (one CNN for every camera)."""

    max_batch_size: int = Field(
        8,
        ge=1,
        le=4096,
        description=(
            "Frames per forward pass (requests are gathered up to it; a larger request is split). "
            "8 is fastest on CPU; raise it (64-256) on a GPU."
        ),
    )
    num_replicas: int = Field(1, ge=1, le=1024)
    num_cpus: float = Field(0.75, gt=0, le=64, description="CPUs per replica (fractional on small machines).")
    num_gpus: float = Field(0.0, ge=0, le=8, description="GPUs per replica (1 on a GPU node).")
    torch_threads: int = Field(1, ge=1, le=256)
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        le=10_000,
        description="Requests a replica holds at once; times the frames per request it bounds how full a batch gets.",
    )


class EnsembleServeConfig(BatchConfig):
    """The voting-ensemble deployment (the manifest's members, weights, calibration, threshold)."""

    num_replicas: int = Field(1, ge=1, le=1024)
    num_cpus: float = Field(0.25, gt=0, le=64)
    max_ongoing_requests: int = Field(64, ge=1, le=10_000)
    vote: Literal["manifest", "soft", "majority", "k_of_n"] = Field(
        "manifest", description="Voting rule; manifest = the one the model was exported with (weighted soft)."
    )
    vote_k: int | None = Field(None, ge=1, le=100, description="k for vote k_of_n.")

    @model_validator(mode="after")
    def _check(self) -> EnsembleServeConfig:
        if self.vote == "k_of_n" and self.vote_k is None:
            raise ValueError("vote k_of_n needs vote_k")
        return self


class ClipServeConfig(BatchConfig):
    """The batched clip-backbone deployment (a model on a clip backbone: one window of T frames per request)."""

    max_batch_size: int = Field(
        2,
        ge=1,
        le=1024,
        description="Windows per forward pass (gathered from every camera). 1-2 on CPU; raise it (8-32) on a GPU.",
    )
    batch_wait_timeout_s: float = Field(0.05, ge=0, le=10, description="Seconds a batch waits to fill.")
    num_replicas: int = Field(1, ge=1, le=1024)
    num_cpus: float = Field(0.75, gt=0, le=64, description="CPUs per replica (fractional on small machines).")
    num_gpus: float = Field(0.0, ge=0, le=8, description="GPUs per replica (1 on a GPU node).")
    torch_threads: int = Field(1, ge=1, le=256)
    max_ongoing_requests: int = Field(16, ge=1, le=10_000, description="Windows a replica holds at once.")


class CascadeConfig(Frozen):
    """Cheap member first: the clip model scores only the windows whose gate probability reaches the gate."""

    gate_member: str | None = Field(
        None,
        description="A member of the model that reads the motion statistics (e.g. motion_trees); None: no cascade.",
    )
    gate_threshold: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Windows whose gate probability is below this get the gate's verdict (that probability, "
        "not violent) without the clip model; must be <= confirmation.enter_threshold. Recall cost: with the "
        "2026.11.21-2 motion_trees on unseen VioPeru windows, 0.1 gates 40 % of windows and every window of "
        "12 % of fight clips, 0.2 gates 59 % and 31 %.",
    )


class RateLimitConfig(Frozen):
    """Per-token limit on POST requests (a token bucket in each ingress replica)."""

    per_minute: float = Field(120.0, ge=0, le=1_000_000, description="Sustained POSTs per minute; 0 turns it off.")
    burst: int = Field(30, ge=1, le=1_000_000, description="POSTs allowed at once before the rate applies.")


class ConsoleConfig(Frozen):
    """The operator console at /ui/ (sign-in with users from `nexara users add`, roles, sessions)."""

    enabled: bool = Field(True, description="Serve the console at /ui/ and its session API at /ui/api/.")
    users_file: str = Field(
        "users.json",
        description="Users file written by `nexara users add`; a relative path is made absolute against the "
        "working folder where the config is loaded (the ingress replica runs elsewhere).",
    )
    session_ttl_s: float = Field(8 * 3600.0, ge=60, le=30 * 86_400, description="Sign-in session lifetime.")
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed sign-ins per user name (and per client) before 429s start."
    )
    login_window_s: float = Field(60.0, gt=0, le=86_400, description="Window the failed sign-ins are counted over.")
    secure_cookie: bool = Field(False, description="Mark the session cookie Secure (set it behind an HTTPS proxy).")

    @model_validator(mode="after")
    def _absolute_users_file(self) -> ConsoleConfig:
        # the ingress replica's working folder is Ray's, not the one `nexara serve` ran in
        path = os.path.abspath(os.path.expanduser(self.users_file))
        if path != self.users_file:
            object.__setattr__(self, "users_file", path)
        return self


class ServeSection(Model):
    """The Ray Serve application (`nexara serve`, `nexara serve build`, `nexara watch`)."""

    app_name: str = Field("nexara", pattern=ID_PATTERN)
    route_prefix: str = Field("/", pattern=r"^/")
    host: str = Field("127.0.0.1", description="HTTP proxy host (0.0.0.0 to listen on every interface).")
    port: int = Field(8000, ge=0, le=65_535, description="HTTP proxy port.")
    token_env: str = Field(
        "NEXARA_API_TOKEN", description="Environment variable holding the bearer token every route but /healthz needs."
    )
    max_upload_mb: float = Field(200.0, gt=0, le=100_000, description="Largest video accepted by POST /v1/predict.")
    model_dir: str | None = Field(None, description="Model manifest folder (default: the shipped model).")
    ingress_num_cpus: float = Field(0.1, gt=0, le=64)
    stream_num_cpus: float = Field(0.25, gt=0, le=64, description="CPUs reserved per stream actor.")
    camera_start_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Seconds a new camera may take to start before it is refused (503)."
    )
    source_policy: SourcePolicySection = Field(default_factory=SourcePolicySection)  # type: ignore[arg-type]
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)  # type: ignore[arg-type]
    max_json_kb: float = Field(64.0, gt=0, le=100_000, description="Largest JSON body (POST /v1/cameras).")
    backbone: BackboneServeConfig = Field(default_factory=BackboneServeConfig)  # type: ignore[arg-type]
    ensemble: EnsembleServeConfig = Field(default_factory=EnsembleServeConfig)  # type: ignore[arg-type]
    clip: ClipServeConfig = Field(default_factory=ClipServeConfig)  # type: ignore[arg-type]
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)  # type: ignore[arg-type]
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)  # type: ignore[arg-type]


class WebhookConfig(Frozen):
    url: str = Field(description="Receiver URL (http/https; ${ENV} allowed).")
    secret_env: str | None = Field(
        None,
        description="Environment variable holding the signing secret(s), `whsec_<base64>` (Standard Webhooks); "
        "during key rotation several, newest first, separated by spaces.",
    )
    timeout_s: float = Field(5.0, gt=0, le=600)
    max_attempts: int = Field(6, ge=1, le=100)
    backoff_initial_s: float = Field(0.5, gt=0, le=3600)
    backoff_max_s: float = Field(30.0, gt=0, le=86_400)


class MqttConfig(Frozen):
    """An MQTT broker that gets every event, a per-camera ON/OFF state and Home Assistant discovery."""

    host: str = Field(description="Broker host name or address (${ENV} allowed).")
    port: int = Field(1883, ge=1, le=65_535, description="Broker port (8883 is the usual TLS port).")
    client_id: str | None = Field(None, description="MQTT client id (default: <node_id>-<source id>).")
    topic_prefix: str = Field(
        "nexara", pattern=r"^[^#+]+$", description="Prefix of the `available`, `events` and per-camera topics."
    )
    discovery: bool = Field(True, description="Publish Home Assistant MQTT discovery (one binary sensor per camera).")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+]+$", description="Home Assistant discovery prefix.")
    node_id: str = Field("nexara", pattern=r"^[A-Za-z0-9_-]+$", description="Node id in discovery topics and ids.")
    username: str | None = Field(None, description="User name (the password comes from password_env).")
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    tls: bool = Field(False, description="Connect with TLS (implied by any tls_* file).")
    tls_ca_file: str | None = Field(None, description="CA bundle the broker certificate is checked against.")
    tls_cert_file: str | None = Field(None, description="Client certificate (with tls_key_file).")
    tls_key_file: str | None = Field(None, description="Client private key (with tls_cert_file).")
    tls_insecure: bool = Field(False, description="Skip the broker host name check (self-signed test brokers).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; the last will fires after ~1.5x.")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="Messages held while the broker is away.")
    reconnect_max_s: float = Field(30.0, ge=1, le=3600, description="Longest wait between reconnect attempts.")

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password_env and not self.username:
            raise RuleError(("password_env",), "password_env needs username")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise RuleError(("tls_cert_file",), "tls_cert_file and tls_key_file go together")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or any((self.tls_ca_file, self.tls_cert_file, self.tls_insecure))


class SinksSection(Frozen):
    """Where alerts go. The event log is always written first (durable), then the others."""

    run_dir: str = Field("runs/live", description="Folder of live runs; each run gets a timestamped subfolder.")
    event_log: str = Field("events.jsonl", description="Event log file name inside the run folder.")
    clips: bool = Field(True, description="Record an evidence clip for each alert (remuxed packets).")
    clip_pre_s: float = Field(5.0, ge=0, le=600, description="Seconds of evidence before the alert start.")
    clip_post_s: float = Field(5.0, ge=0, le=600, description="Seconds of evidence after the alert start.")
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None
    console: bool = Field(True, description="Print events in `nexara watch`.")
