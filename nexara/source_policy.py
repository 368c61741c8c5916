"""Which camera sources a caller of the HTTP API may open (the ``serve.source_policy`` section).

A camera added over HTTP names a URL the server will open with FFmpeg, so without a policy an API user
could make the server read its own files (``/etc/passwd``) or reach services only the server can reach
(cloud metadata at 169.254.169.254, Ray's dashboard on 127.0.0.1:8265). :func:`check_source` refuses:

* a URL whose scheme is not in ``schemes`` (files are not a scheme: they need ``file_roots``);
* a local file (an absolute path or ``file://``) whose real path (symbolic links followed) is not inside
  one of ``file_roots``; relative paths and FFmpeg protocol prefixes (``concat:``, ``pipe:``...) always;
* a host any of whose addresses (every address the name resolves to) lies in ``denied_networks``
  (loopback, link-local, cloud metadata, unspecified, multicast by default) unless it lies in
  ``allowed_networks``; a port in ``denied_ports`` (Ray's own) on any host;
* an FFmpeg input ``format`` not in ``formats`` (devices, lavfi...), an ``options`` key not in ``options``,
  and ``${ENV}`` in the URL (it would be expanded by the reader: a way to read the server's secrets).

Every refusal raises :class:`nexara.errors.SourceNotAllowedError`, whose message is the same whatever
the reason (the reason is kept for the server's log): the caller learns nothing about which files exist.
The stream reader runs the same check before every (re)connect (:mod:`actors.sources`), which bounds
DNS rebinding to the gap between that check and FFmpeg's own resolution.

Pure logic, no Ray: the schema (:class:`nexara.config.live.SourcePolicySection`) and the live path share it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from nexara.errors import SourceNotAllowedError

__all__ = [
    "DEFAULT_DEMUXERS",
    "DEFAULT_DENIED_NETWORKS",
    "DEFAULT_DENIED_PORTS",
    "DEFAULT_OPTIONS",
    "DEFAULT_SCHEMES",
    "Policy",
    "check_source",
    "ffmpeg_options",
    "parse_network",
    "protocol_whitelist",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

DEFAULT_SCHEMES = ("rtsp", "rtsps", "http", "https")

#: Refused by default for cameras added over HTTP. Cloud metadata services listen on link-local
#: addresses (AWS, GCP, Azure IMDS: 169.254.169.254; AWS IPv6: fd00:ec2::254) or on fixed ones
#: (Alibaba 100.100.100.200, Azure wire server 168.63.129.16, Oracle 192.0.0.192).
DEFAULT_DENIED_NETWORKS = (
    "127.0.0.0/8",  # loopback: Ray's dashboard, GCS, this app itself
    "::1/128",
    "0.0.0.0/8",  # "this host" (0.0.0.0 reaches loopback on Linux)
    "::/128",
    "169.254.0.0/16",  # link-local, cloud metadata
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "168.63.129.16/32",
    "192.0.0.192/32",
    "224.0.0.0/4",  # multicast
    "ff00::/8",
)

#: Ray's fixed ports (GCS, dashboard, client server, dashboard agent): never a camera, on any host.
DEFAULT_DENIED_PORTS = (6379, 8265, 10001, 52365)

#: FFmpeg options an API caller may set (transport and buffering; nothing that opens other inputs).
DEFAULT_OPTIONS = (
    "rtsp_transport",
    "rtsp_flags",
    "buffer_size",
    "max_delay",
    "reorder_queue_size",
    "probesize",
    "analyzeduration",
    "fflags",
)

#: FFmpeg demuxers a checked source may be read with (``format_whitelist``): video containers and
#: camera stream formats. Not ``tty`` (renders a text file as video), ``image2``, ``concat``, ``lavfi``...
DEFAULT_DEMUXERS = (
    "mov",  # mp4, m4v, 3gp
    "matroska",  # mkv, webm
    "mpegts",
    "avi",
    "flv",
    "asf",
    "mpeg",
    "hls",
    "rtsp",
    "rtp",
    "sdp",
    "mjpeg",
    "mpjpeg",  # MJPEG over HTTP (many IP cameras)
    "h264",
    "hevc",
)

_DEFAULT_PORT = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}

# The lower-level protocols FFmpeg needs under each scheme; "file" is never among them.
_SUB_PROTOCOLS = {
    "http": ("http", "tcp"),
    "https": ("https", "http", "tcp", "tls", "crypto"),
    "rtsp": ("rtsp", "rtp", "srtp", "udp", "tcp"),
    "rtsps": ("rtsps", "rtsp", "rtp", "srtp", "udp", "tcp", "tls"),
    "rtmp": ("rtmp", "tcp"),
    "rtmps": ("rtmps", "rtmp", "tcp", "tls"),
}


class Policy(Protocol):
    """What :func:`check_source` reads (``SourcePolicySection`` in the schema)."""

    @property
    def schemes(self) -> Sequence[str]: ...
    @property
    def file_roots(self) -> Sequence[str]: ...
    @property
    def denied_networks(self) -> Sequence[str]: ...
    @property
    def allowed_networks(self) -> Sequence[str]: ...
    @property
    def denied_ports(self) -> Sequence[int]: ...
    @property
    def formats(self) -> Sequence[str]: ...
    @property
    def options(self) -> Sequence[str]: ...
    @property
    def demuxers(self) -> Sequence[str]: ...


def parse_network(text: str) -> Network:
    """``"10.0.0.0/8"``, ``"fe80::/10"`` or one address; ValueError names the bad entry."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP network (e.g. 10.0.0.0/8, fe80::/10) or address") from None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _address(text: str) -> Address:
    addr = ipaddress.ip_address(text.split("%", 1)[0])  # fe80::1%eth0: the zone does not change the address
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return addr


def _inside(addr: Address, networks: Iterable[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def _check_file(policy: Policy, path: str) -> None:
    if not path.startswith("/"):
        raise SourceNotAllowedError(f"not an absolute path: {path!r}")
    real = Path(path).resolve()  # symbolic links and '..' followed: the file FFmpeg would open
    for root in policy.file_roots:
        if real.is_relative_to(Path(root).resolve()):
            return
    raise SourceNotAllowedError(f"{real} is outside serve.source_policy.file_roots")


def _addresses(host: str, port: int, resolve: Resolver) -> list[Address]:
    """The host itself when it is an address, else every address it resolves to (all must pass)."""
    try:
        return [_address(host)]
    except ValueError:
        pass
    try:
        addresses = [_address(a) for a in resolve(host, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise SourceNotAllowedError(f"host {host!r} does not resolve ({exc})") from None
    if not addresses:
        raise SourceNotAllowedError(f"host {host!r} resolves to no address")
    return addresses


def _check_host(policy: Policy, scheme: str, netloc_host: str | None, port: int | None, resolve: Resolver) -> None:
    if not netloc_host:
        raise SourceNotAllowedError("the URL has no host")
    port = port if port is not None else _DEFAULT_PORT.get(scheme, 0)
    if port in policy.denied_ports:
        raise SourceNotAllowedError(f"port {port} is in serve.source_policy.denied_ports")
    addresses = _addresses(netloc_host, port, resolve)
    allowed = [parse_network(n) for n in policy.allowed_networks]
    denied = [parse_network(n) for n in policy.denied_networks]
    for addr in addresses:
        if _inside(addr, denied) and not _inside(addr, allowed):
            raise SourceNotAllowedError(f"host {netloc_host!r} has address {addr} in a denied network")


def check_source(
    policy: Policy,
    url: str,
    *,
    input_format: str | None = None,
    options: Mapping[str, str] | None = None,
    resolve: Resolver | None = None,
) -> None:
    """Raise :class:`SourceNotAllowedError` unless ``policy`` lets a caller open ``url`` (see the module
    docstring). ``resolve(host, port)`` returns the host's addresses (``socket.getaddrinfo`` by default)."""
    if "${" in url:
        raise SourceNotAllowedError("${ENV} references are not expanded for this source")
    if input_format is not None and input_format not in policy.formats:
        raise SourceNotAllowedError(f"input format {input_format!r} is not in serve.source_policy.formats")
    for key in options or {}:
        if key not in policy.options:
            raise SourceNotAllowedError(f"FFmpeg option {key!r} is not in serve.source_policy.options")
    if input_format is not None:
        return  # an allowed device format: the operator allowed that device class by name
    if url.startswith("file://"):
        _check_file(policy, url[len("file://") :])
        return
    if "://" not in url:
        _check_file(policy, url)
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceNotAllowedError(f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        raise SourceNotAllowedError(f"scheme {scheme!r} is not in serve.source_policy.schemes")
    _check_host(policy, scheme, parts.hostname, port, resolve or _resolve)


def protocol_whitelist(url: str) -> str:
    """FFmpeg's ``protocol_whitelist`` for a checked source: the protocols its scheme needs, never
    ``file`` for a URL (an HLS playlist cannot point at local files) and only ``file`` for a file (a
    playlist in a file root cannot reach the network)."""
    if "://" not in url or url.startswith("file://"):
        return "file"
    scheme = url.split("://", 1)[0].lower()
    return ",".join(_SUB_PROTOCOLS.get(scheme, (scheme, "tcp")))


def ffmpeg_options(policy: Policy, url: str, input_format: str | None = None) -> dict[str, str]:
    """FFmpeg options that hold a checked source to what was checked: the protocols of its scheme
    (:func:`protocol_whitelist`) and the demuxers of ``policy.demuxers`` (plus an allowed forced format)."""
    demuxers = [*policy.demuxers, *([input_format] if input_format else [])]
    return {"protocol_whitelist": protocol_whitelist(url), "format_whitelist": ",".join(demuxers)}
