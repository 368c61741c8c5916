"""The cameras an operator added over the HTTP API, kept in the run folder (``cameras.json``) so that an app
started again on that folder (``nexara serve`` killed, a power cut, a redeploy) starts them again
(:class:`actors.stream_actor.CameraManager`). Cameras of the config (``cameras:`` of ray_config.yaml, the
sources of ``nexara watch``) are not kept here: the config starts them.

The file is ``{"version": 1, "cameras": [<CameraConfig JSON>, ...]}``, replaced atomically on every add and
remove (a temporary file fsynced, ``os.replace``, the folder fsynced): a kill at any moment leaves the old
file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexara.config.live import SourcePolicySection
from nexara.source_policy import check_source

logger = logging.getLogger(__name__)

STORE_FILE = "cameras.json"
VERSION = 1


def checked_source(policy: SourcePolicySection, camera: Mapping[str, Any]) -> dict[str, Any]:
    """``camera`` with ``source_policy`` set to ``policy``'s settings once ``policy`` lets it open its source
    (:func:`nexara.source_policy.check_source`; raises :class:`~nexara.errors.SourceNotAllowedError`). A
    missing or mistyped url, format or options is left to the camera schema. Blocking: may resolve a host.
    The one check of a camera's source for the HTTP API and for the cameras restored from the store."""
    url, fmt, options = camera.get("url"), camera.get("format"), camera.get("options")
    if isinstance(url, str):
        check_source(
            policy,
            url,
            input_format=fmt if isinstance(fmt, str) else None,
            options=options if isinstance(options, dict) else None,
        )
    return {**camera, "source_policy": policy.model_dump(mode="json")}


@dataclass(frozen=True)
class CameraStore:
    """``cameras.json`` of one run folder."""

    path: Path

    @classmethod
    def of_run_dir(cls, run_dir: str | Path) -> CameraStore:
        return cls(Path(run_dir) / STORE_FILE)

    def load(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The kept cameras by id (in file order) and the problems found, each naming the file. A file that
        cannot be read or parsed gives no cameras; it, or one with entries that have no id, is copied aside
        first (``cameras.json.bad-<time>``) so that the next save does not lose what an operator added."""
        if not self.path.exists():
            return {}, []
        problems: list[str] = []
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            return {}, [f"{self.path}: cannot be read ({exc}); its cameras are not restored"]
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
                raise ValueError('not an object with a "cameras" list')
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, this server reads version {VERSION}")
        except ValueError as exc:  # JSON and UTF-8 errors too
            kept = self._set_aside(raw)
            return {}, [f"{self.path}: corrupt ({exc}); no camera restored from it, {kept}"]
        cameras: dict[str, dict[str, Any]] = {}
        bad = False
        for i, entry in enumerate(data["cameras"]):
            cid = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(cid, str) or not cid or cid in cameras:
                what = "a repeated id" if isinstance(cid, str) and cid else "no id"
                problems.append(f"{self.path}: entry {i} has {what}; it is not restored")
                bad = True
                continue
            cameras[cid] = entry
        if bad:
            problems.append(f"{self.path}: {self._set_aside(raw)}")
        return cameras, problems

    def _set_aside(self, raw: bytes) -> str:
        aside = self.path.with_name(f"{self.path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            aside.write_bytes(raw)
        except OSError as exc:
            return f"and it could not be copied aside to {aside} ({exc})"
        return f"the file as it was is kept in {aside}"

    def save(self, cameras: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the file with ``cameras`` (id -> CameraConfig JSON), atomically and durably."""
        body = json.dumps({"version": VERSION, "cameras": list(cameras.values())}, indent=1, sort_keys=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # configs may hold source credentials
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
