"""The first stage of the model runtime (:mod:`nexara.runtime`), without torch: which inputs a model's
members read, and a finite clip decoded as the model was trained, before any backbone.

:class:`ClipDecoder` decodes T frames evenly over the clip (a model on a frame backbone), windows of the
manifest's clip spec every ``window_hop_s`` (a model on a clip backbone), and the flow statistics of
the clip or of each window's own time span; only what some member reads. The HTTP ingress decodes
uploads with it and leaves the backbone to the batched deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from nexara.model_manifest import FeatureConfig, ModelManifest, feature_config

if TYPE_CHECKING:
    from nexara.media import Source

__all__ = ["DEFAULT_WINDOW_HOP_S", "ClipDecoder", "DecodedClip", "Input", "model_reads"]

Input = Literal["frame", "clip", "motion"]
#: the hop between windows when a clip model's manifest records none (made before it did):
#: ``features.window_hop_s``'s default
DEFAULT_WINDOW_HOP_S = 1.0
#: MiB of decoded windows one finite video may take at once (``media.max_decode_mb``): a clip model's windows
#: are held together for `nexara predict` and the HTTP predict route; longer recordings go through
#: `nexara watch`, which streams them
DEFAULT_MAX_DECODE_MB = 2048


def model_reads(manifest: ModelManifest) -> frozenset[Input]:
    """The inputs ``manifest``'s members read: ``"frame"`` (appearance on a frame backbone), ``"clip"``
    (appearance on a clip backbone: the manifest records a clip spec), ``"motion"`` (flow statistics)."""
    inputs = {m.input for m in manifest.members}
    reads: set[Input] = set()
    if "appearance" in inputs:
        reads.add("clip" if manifest.clip is not None else "frame")
    if "motion" in inputs:
        reads.add("motion")
    return frozenset(reads)


@dataclass(frozen=True, slots=True)
class DecodedClip:
    """A finite clip decoded as the model was trained, before any backbone: one row per window (a model on
    a clip backbone) or one row for the whole clip. ``frames`` ``(T, H, W, 3)`` uint8 for a frame backbone,
    ``windows`` ``(W, T, H, W, 3)`` uint8 for a clip backbone (None where not read); ``motion`` ``(rows, K)``
    float32 where read; ``start_s``/``end_s`` ``(rows,)`` each row's span; ``frames_used``: the frames the
    backbone reads (T sampled frames, or W windows x T), or for a model that reads only motion statistics
    the frames they were computed from."""

    frames: np.ndarray | None
    windows: np.ndarray | None
    motion: np.ndarray | None
    start_s: np.ndarray
    end_s: np.ndarray
    frames_used: int
    duration_s: float | None

    @property
    def rows(self) -> int:
        return len(self.start_s)


class ClipDecoder:
    """Decodes finite clips for one model: built from its manifest (checked by :func:`feature_config`)."""

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        #: how this model's inputs are computed (motion and clip specs checked against this build)
        self.feature_config: FeatureConfig = feature_config(manifest)
        #: the inputs the members read: a subset of {"frame", "clip", "motion"}
        self.reads = model_reads(manifest)
        self.window_hop_s = float(manifest.window_hop_s or DEFAULT_WINDOW_HOP_S)

    def decode(
        self, source: Source, *, timeout_s: float = 10.0, max_decode_mb: float = DEFAULT_MAX_DECODE_MB
    ) -> DecodedClip:
        """A finite video (path, URL or bytes) decoded as the model was trained: sampled frames (frame
        backbone), windows (clip backbone), the motion statistics of the clip or of each window. Unreadable
        input, or a video whose windows would take more than ``max_decode_mb`` MiB decoded, raises a
        :class:`~nexara.errors.MediaError`."""
        from nexara.media import probe, sample_clip, sample_windows
        from nexara.motion import clip_motion, gray_frames, motion_from_gray, window_motion

        fc = self.feature_config
        motion = None
        if fc.clip is not None:  # trained on windows: cut them (a motion-only member reads their flow statistics)
            spec = fc.clip
            if "clip" in self.reads:
                self._check_budget(source, timeout_s, max_decode_mb)
            w = sample_windows(
                source,
                window_s=spec.window_s,
                hop_s=self.window_hop_s,
                num_frames=spec.num_frames,
                size_hw=spec.decode_size_hw,
                resize=spec.crop,
                timeout_s=timeout_s,
            )
            if fc.motion is not None:
                bounds = list(zip(w.start_s.tolist(), w.end_s.tolist(), strict=True))
                motion = window_motion(source, bounds, spec=fc.motion, timeout_s=timeout_s)
            used = int(w.frames.shape[0] * w.frames.shape[1])
            windows = w.frames if "clip" in self.reads else None
            return DecodedClip(None, windows, motion, w.start_s, w.end_s, used, w.info.duration_s)
        frames, used, duration = None, 0, None
        if "frame" in self.reads:
            clip = sample_clip(
                source, num_frames=fc.frames_per_clip, size_hw=fc.size_hw, resize=fc.resize, timeout_s=timeout_s
            )
            frames, used, duration = clip.frames, len(clip.frames), clip.info.duration_s
        if fc.motion is not None and frames is not None:
            motion = clip_motion(source, spec=fc.motion, timeout_s=timeout_s)[None]
        elif fc.motion is not None:  # motion only: no frame decoded for a backbone; the container's duration
            grays, times = gray_frames(source, fc.motion, timeout_s=timeout_s)
            motion, used = motion_from_gray(grays, times, fc.motion)[None], len(grays)
            duration = probe(source, timeout_s=timeout_s).duration_s
        return DecodedClip(frames, None, motion, np.zeros(1), np.asarray([float(duration or 0.0)]), used, duration)

    def _check_budget(self, source: Source, timeout_s: float, max_decode_mb: float) -> None:
        """Refuse, before decoding, a video whose windows would not fit ``max_decode_mb`` (a long recording
        given to predict would otherwise be decoded whole into memory)."""
        from nexara.errors import MediaError
        from nexara.media import probe, window_indices

        spec = self.feature_config.clip
        assert spec is not None
        info = probe(source, timeout_s=timeout_s)
        if info.frame_count <= 0 or info.fps <= 0:
            return  # unknown length: sample_windows decides
        idx, _ = window_indices(
            info.frame_count, info.fps, window_s=spec.window_s, hop_s=self.window_hop_s, num_frames=spec.num_frames
        )
        h, w = spec.decode_size_hw
        need_mb = idx.size * h * w * 3 / 2**20
        if need_mb > max_decode_mb:
            raise MediaError(
                source,
                f"{info.duration_s:.0f} s of video is {len(idx)} windows of {spec.num_frames} frames "
                f"({need_mb:.0f} MiB decoded), above media.max_decode_mb ({max_decode_mb:g}); score long "
                "recordings with `nexara watch VIDEO --pacing fast`, which streams them window by window",
            )
