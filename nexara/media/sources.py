"""What a source is: URL scheme, live or finite, and how errors and logs name it."""

from __future__ import annotations

import re

from nexara.media.types import Source

__all__ = ["is_live_url", "source_label", "url_scheme"]

# Schemes of sources that never end: sample_clip refuses them, probe does not count their frames.
_LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "udp", "rtp", "srt", "tcp"})
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


def _url_scheme(source: Source) -> str | None:
    if not isinstance(source, str):
        return None
    match = _URL_RE.match(source)
    if match is None:
        return None
    scheme = match.group("scheme").lower()
    return None if scheme == "file" else scheme


def _redact(url: str) -> str:
    """Mask the password of ``scheme://user:password@host`` URLs."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _label(source: Source) -> str:
    """How error messages and logs name a source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    if _url_scheme(source) is not None:
        return _redact(str(source))
    if isinstance(source, str) and source.startswith("file://"):
        return source[len("file://") :]
    return str(source)


def _is_live(source: Source) -> bool:
    scheme = _url_scheme(source)
    if scheme is None:
        return False
    return scheme.split("+")[0] in _LIVE_SCHEMES


def url_scheme(source: Source) -> str | None:
    """The lower-case URL scheme of ``source`` (``"rtsp"``, ``"http"``...), None for paths, bytes
    and ``file://`` URLs."""
    return _url_scheme(source)


def is_live_url(source: Source) -> bool:
    """True for URLs of streams that never end (rtsp, rtmp, udp, srt, ...; not http/HLS)."""
    return _is_live(source)


def source_label(source: Source) -> str:
    """How errors and logs name ``source``: the path, the URL with its password masked, or
    ``<N bytes in memory>``."""
    return _label(source)
