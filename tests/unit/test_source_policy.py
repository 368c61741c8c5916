"""The camera-source policy (nexara.source_policy): schemes, file roots, denied networks and ports,
IPv6, host names resolving to refused addresses, and one generic message for every refusal."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest

from nexara.config import NexaraConfig, SourcePolicySection
from nexara.errors import MediaError, SourceNotAllowedError, http_status
from nexara.source_policy import check_source, protocol_whitelist


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Iterable[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


def _refused(policy: SourcePolicySection, url: str, **kw: object) -> str:
    with pytest.raises(SourceNotAllowedError) as info:
        check_source(policy, url, **kw)  # type: ignore[arg-type]
    err = info.value
    assert str(err) == SourceNotAllowedError.public_message  # the same text whatever the reason
    assert err.code == "source_not_allowed" and http_status(err.code) == 422
    return err.reason


DEFAULT = SourcePolicySection()
DNS = _resolver(
    {
        "cam.example": ["203.0.113.7"],
        "rebind.example": ["203.0.113.8", "169.254.169.254"],  # one bad address is enough
        "local.example": ["127.0.0.1"],
        "v6only.example": ["2001:db8::5"],
        "v6meta.example": ["fd00:ec2::254"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "zone.example": ["fe80::1%eth0"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam.example/stream",
        "rtsps://cam.example:8322/s",
        "http://cam.example/video.ts",
        "https://user:pw@cam.example/live.m3u8",
        "http://203.0.113.9:8080/x",
        "http://[2001:db8::9]/x",
        "rtsp://v6only.example/s",
        "http://10.1.2.3/cam",  # private networks are where cameras live: allowed
        "http://192.168.1.20/cam",
    ],
)
def test_default_policy_allows_camera_urls(url: str) -> None:
    check_source(DEFAULT, url, resolve=DNS)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8265/api/jobs/",
        "http://127.0.0.1/x",
        "http://127.9.9.9/x",
        "http://local.example/x",
        "http://0.0.0.0/x",
        "http://[::1]/x",
        "http://[::]/x",
        "http://[fe80::1]/x",
        "http://[fe80::1%25eth0]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fd00:ec2::254]/latest/",
        "http://100.100.100.200/latest/meta-data",
        "http://168.63.129.16/machine",
        "http://rebind.example/x",
        "http://v6meta.example/x",
        "http://mapped.example/x",
        "http://zone.example/x",
        "http://224.0.0.1/x",
        "http://nowhere.example/x",  # does not resolve: refused, same message
        "http://10.0.0.5:6379/",  # Ray's ports on any host
        "http://10.0.0.5:8265/",
        "rtsp://10.0.0.5:10001/",
        "ftp://cam.example/x",
        "gopher://cam.example/x",
        "tcp://cam.example:554",
        "http:///nohost",
        "http://cam.example:99999/x",
        "http://cam.example/${NEXARA_API_TOKEN}",
    ],
)
def test_default_policy_refuses_internal_and_odd_urls(url: str) -> None:
    _refused(DEFAULT, url, resolve=DNS)


def test_files_need_an_allowed_root_and_every_refusal_looks_the_same(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    inside = root / "cam.mp4"
    inside.write_bytes(b"x")
    (root / "escape.mp4").symlink_to("/etc/passwd")
    policy = SourcePolicySection(file_roots=[str(root)])
    check_source(policy, str(inside))
    check_source(policy, f"file://{inside}")
    check_source(policy, str(root / "missing.mp4"))  # inside a root: the usual "not found" answers apply
    reasons = [
        _refused(policy, path)
        for path in (
            "/etc/passwd",
            "/no/such/file.mp4",
            f"{root}/../outside.mp4",
            str(root / "escape.mp4"),  # a symbolic link out of the root
            "file:///etc/passwd",
            "relative/cam.mp4",
            "concat:/etc/passwd|/etc/hosts",
            "pipe:0",
        )
    ]
    assert len(set(reasons)) > 1  # different reasons in the log, one message to the caller
    _refused(DEFAULT, str(inside))  # no roots by default: no local file at all


def test_formats_options_and_overrides() -> None:
    _refused(DEFAULT, ":0.0", input_format="x11grab")
    check_source(SourcePolicySection(formats=["x11grab"]), ":0.0", input_format="x11grab")
    check_source(DEFAULT, "rtsp://cam.example/s", options={"rtsp_transport": "tcp"}, resolve=DNS)
    _refused(DEFAULT, "rtsp://cam.example/s", options={"protocol_whitelist": "file,rtsp"}, resolve=DNS)
    loop_ok = SourcePolicySection(allowed_networks=["127.0.0.1/32"])
    check_source(loop_ok, "http://127.0.0.1:9000/cam.ts")
    _refused(loop_ok, "http://127.0.0.1:8265/")  # denied ports stay denied on an allowed network
    _refused(loop_ok, "http://127.0.0.2/")
    check_source(SourcePolicySection(schemes=["rtmp"]), "rtmp://cam.example/live", resolve=DNS)


def test_protocol_whitelist_never_mixes_files_and_network() -> None:
    assert protocol_whitelist("/videos/a.mp4") == "file"
    assert protocol_whitelist("file:///videos/a.mp4") == "file"
    assert "file" not in protocol_whitelist("https://cam.example/live.m3u8").split(",")
    assert set(protocol_whitelist("rtsp://cam/s").split(",")) >= {"rtsp", "rtp", "tcp", "udp"}


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ({"schemes": ["HTTP"]}, "schemes"),
        ({"schemes": ["file"]}, "schemes"),
        ({"file_roots": ["videos"]}, "file_roots"),
        ({"denied_networks": ["not-a-net"]}, "denied_networks"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "allowed_networks"),
        ({"denied_ports": [0]}, "denied_ports"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_validation_refuses_bad_policies(policy: dict[str, object], key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        NexaraConfig.model_validate({"serve": {"source_policy": policy}})


def test_defaults_and_rate_limit_in_the_schema() -> None:
    s = NexaraConfig.model_validate({}).serve
    assert s.host == "127.0.0.1"
    assert s.source_policy.file_roots == [] and "169.254.0.0/16" in s.source_policy.denied_networks
    assert 8265 in s.source_policy.denied_ports
    assert s.rate_limit.per_minute > 0 and s.rate_limit.burst >= 1


def test_reader_rechecks_the_policy_at_every_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolved to a public address when the camera was added, to the
    metadata address now; the reader refuses before opening anything and does not retry."""
    import nexara.source_policy as sp
    from actors.sources import SourceConfig, StreamReader

    opened: list[str] = []
    monkeypatch.setattr(sp, "_resolve", _resolver({"cam.example": ["169.254.169.254"]}))
    monkeypatch.setattr("actors.sources.open_video_stream", lambda url, **kw: opened.append(url))
    cfg = SourceConfig("http://cam.example/cam.ts", source_policy=SourcePolicySection(), backoff_initial_s=0.01)
    reader = StreamReader(cfg, fps=5)
    assert list(itertools.islice(reader.frames(), 1)) == []
    st = reader.stats()
    assert st["state"] == "failed" and st["last_error"] == SourceNotAllowedError.public_message
    assert opened == [] and st["reconnects"] == 0


def test_config_cameras_are_not_policed_and_http_ones_get_whitelists() -> None:
    from actors.sources import SourceConfig

    assert SourceConfig("/anywhere/cam.mp4").open_options == {}
    cfg = SourceConfig("https://cam.example/live.m3u8", options={"rtsp_transport": "tcp"}, source_policy={})
    assert cfg.open_options["protocol_whitelist"].split(",")[0] == "https"
    assert {"hls", "mpegts", "mov"} <= set(cfg.open_options["format_whitelist"].split(","))
    assert "tty" not in cfg.open_options["format_whitelist"].split(",")
    assert cfg.open_options["rtsp_transport"] == "tcp"
    dev = SourceConfig(":0.0", format="x11grab", source_policy={"formats": ["x11grab"]})
    assert dev.open_options["format_whitelist"].endswith(",x11grab")


def test_a_text_file_inside_a_root_is_not_rendered_as_video(tmp_path: Path, shared_clips: Path) -> None:
    """FFmpeg's tty demuxer would turn a text file into frames (and evidence clips): the demuxer
    whitelist of a policed source refuses it, while a real video in the root still plays."""
    from actors.sources import SourceConfig, StreamReader

    text = tmp_path / "notes.txt"
    text.write_text("secret line\n" * 200)
    video = next(iter(sorted(shared_clips.rglob("*.mp4"))))
    policy = {"file_roots": [str(tmp_path), str(shared_clips)]}
    with pytest.raises(MediaError):
        list(StreamReader(SourceConfig(str(text), source_policy=policy, pacing="fast"), fps=5).frames())
    reader = StreamReader(SourceConfig(str(video), source_policy=policy, pacing="fast"), fps=5)
    assert len(list(itertools.islice(reader.frames(), 3))) == 3


def test_a_password_from_the_environment_stays_out_of_the_status_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.sources import SourceConfig, StreamReader
    from nexara.config import parse_config

    monkeypatch.setenv("NX_CAM_PASSWORD", "hunter2-secret")
    cfg = parse_config("cameras:\n  - id: cam\n    url: rtsp://admin:${NX_CAM_PASSWORD}@10.0.0.9/s\n")
    source = SourceConfig.from_camera(cfg.resolve_camera("cam"))
    assert source.url == "rtsp://admin:${NX_CAM_PASSWORD}@10.0.0.9/s"  # what the camera status shows
    assert source.resolved_url == "rtsp://admin:hunter2-secret@10.0.0.9/s"  # what FFmpeg opens
    assert source.is_url and source.is_live and source.should_reconnect
    assert "hunter2" not in StreamReader(source, fps=5).label
