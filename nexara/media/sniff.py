"""The first bytes of a local file or an in-memory source: readable at all, and what it is when it
is not a video (for error messages)."""

from __future__ import annotations

from pathlib import Path

from nexara.errors import NotAVideoError, SourceUnreachableError
from nexara.media.sources import _label, _url_scheme
from nexara.media.types import Source

# First-box types of ISO-BMFF files (MP4, MOV, M4A, 3GP): bytes 4..8 of the file.
_ISO_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"})


def _sniff(head: bytes) -> str:
    """A short guess of what a non-video file is, for error messages ('' when unsure)."""
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "it is a ZIP archive"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like a text file"
    return ""


def _is_iso_bmff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES


def _read_head(source: Source, label: str) -> bytes:
    """First bytes of a local file or a bytes source (b'' for URLs); checks a path is readable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise NotAVideoError(label, "the input is empty (0 bytes), not a video")
        return bytes(source[:32])
    if _url_scheme(source) is not None:
        return b""
    path = Path(_label(source))
    if not path.exists():
        raise SourceUnreachableError(label, "no such file")
    if path.is_dir():
        raise NotAVideoError(label, "is a directory, not a video file")
    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except PermissionError as exc:
        raise SourceUnreachableError(label, "permission denied") from exc
    except OSError as exc:
        raise SourceUnreachableError(label, f"cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise NotAVideoError(label, "the file is empty (0 bytes), not a video")
    return head
