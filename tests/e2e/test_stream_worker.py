"""The per-source live logic (windows, cut guard, bounded queue, adaptive sampling, confirmation, event
log, evidence clips) on real footage with the real shipped model, in-process: no Ray needed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.compose import compose_wall_video, concat_clips
from actors.event_log import EventLog
from actors.grid import GridSpec
from actors.quality import QualityMonitor, ReferenceStore
from actors.recorder import ClipRecorder
from actors.records import Verdict, WindowResult
from actors.sources import SourceConfig
from actors.stream import LiveModel, SourceWorker
from nexara.config import ConfirmationSection as ConfirmationConfig
from nexara.config import WindowsConfig as WindowSettings
from nexara.config.upkeep import QualitySection

NORMALS = ["nofi108.mp4", "nofi092.mp4", "nofi150.mp4", "nofi068.mp4"]
FIGHT = "fi003.mp4"
CONFIRM = ConfirmationConfig(enter_threshold=0.6, exit_threshold=0.4, k=2, n=3, exit_windows=3)

pytestmark = pytest.mark.timeout(600)


def _clip(root: Path, name: str) -> str:
    return str(sorted(root.rglob(name))[0])


class _Model:
    """The shipped ensemble and its backbone, called like the Serve handles are."""

    def __init__(self, delay_s: float = 0.0) -> None:
        import torch

        from nexara.backbones import create_backbone
        from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel

        torch.set_num_threads(1)
        self.model = EnsembleModel(DEFAULT_MODEL_DIR)
        self.backbone = create_backbone(self.model.manifest.backbone)
        self.live = LiveModel.from_manifest(self.model.manifest)
        self.delay_s = delay_s
        self.windows: list[float] = []

    async def embed(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.backbone(frames).float().numpy()

    async def vote(self, feats: np.ndarray, motion: np.ndarray | None) -> dict[str, Any]:
        from nexara.predict import verdicts

        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow (remote, overloaded) scorer
        v = verdicts(self.model, feats[None], None if motion is None else motion[None])[0]
        self.windows.append(v["violence_probability"])
        return v


@pytest.fixture(scope="module")
def model() -> _Model:
    return _Model()


@pytest.fixture(scope="module")
def splice(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float]:
    normals = [_clip(shared_clips, n) for n in NORMALS]
    order = [*normals[:2], _clip(shared_clips, FIGHT), *normals[2:], *normals[:2]]
    out = tmp_path_factory.mktemp("worker") / "splice.mp4"
    segs = concat_clips(order, out, size_hw=(240, 320), fps=10)
    return str(out), next(s.start_s for s in segs if s.path.endswith(FIGHT))


def _run(worker: SourceWorker, timeout_s: float = 400) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        worker.start()
        assert await worker.wait(timeout_s), worker.status()
        await asyncio.get_running_loop().run_in_executor(None, worker.close, 5.0)
        return worker.status().to_dict()

    return asyncio.run(main())


def test_splice_gives_one_alert_logged_durably_with_evidence_clip(
    model: _Model, splice: tuple[str, float], tmp_path: Path
) -> None:
    path, splice_s = splice
    log_path = tmp_path / "events.jsonl"
    settings = WindowSettings()
    worker = SourceWorker(
        "cam",
        SourceConfig(url=path, pacing="fast"),
        model=model.live,
        embed=model.embed,
        vote=model.vote,
        windows=settings,
        confirmation=CONFIRM,
        event_log=EventLog(log_path),
        recorder=ClipRecorder(tmp_path / "clips", pre_s=2, post_s=2, margin_s=30),
    )
    st = _run(worker)
    cell = st["cells"][0]
    assert st["state"] == "ended" and cell["windows_dropped"] == 0 and cell["windows_failed"] == 0
    assert cell["cuts"] >= 4  # every splice seam is a cut; the motion statistics restart after each
    events = [r.model_dump() for r in EventLog(log_path).read(limit=100)]  # a fresh reader: what is on disk
    starts = [e for e in events if e["kind"] == "start"]
    assert len(starts) == 1, events
    bound = settings.window_s + CONFIRM.k * settings.stride_s + 2.0
    assert splice_s <= starts[0]["at_s"] <= splice_s + bound
    assert events[-1]["kind"] == "end" and events[-1]["event_id"] == starts[0]["event_id"]
    clip = Path(starts[0]["clip_path"])
    assert clip.is_file()
    from nexara.media import probe

    assert probe(str(clip)).duration_s >= 3.5


def test_adaptive_sampling_scores_more_often_while_a_cell_is_hot(model: _Model, splice: tuple[str, float]) -> None:
    path, splice_s = splice
    seen: list[tuple[float, float]] = []
    worker = SourceWorker(
        "cam", SourceConfig(url=path, pacing="fast"), model=model.live, embed=model.embed, vote=model.vote,
        confirmation=CONFIRM,
    )  # fmt: skip
    orig = worker.alerts.receive

    def spy(result: WindowResult) -> bool | None:
        if isinstance(result, Verdict):
            seen.append((result.end_s, result.probability))
        return orig(result)

    worker.alerts.receive = spy  # type: ignore[method-assign]
    _run(worker)
    ends = np.array(sorted(e for e, _ in seen))
    hops = np.diff(ends)
    quiet = [h for e, h in zip(ends[1:], hops, strict=True) if e < splice_s]
    hot = [h for e, h in zip(ends[1:], hops, strict=True) if splice_s <= e <= splice_s + 8]
    assert quiet and min(quiet) >= 0.9  # stride_s = 1 s while quiet
    # alert_stride_s = 0.5 s once a verdict above pre_alert is back (a file read fast runs a few windows ahead)
    assert hot and min(hot) <= 0.6, (hot, seen)


@pytest.mark.parametrize("pacing", ["realtime", "fast"])
def test_slow_scorer_drops_oldest_windows_live_but_never_for_fast_files(
    pacing: str, splice: tuple[str, float], shared_clips: Path, tmp_path: Path
) -> None:
    slow = _Model(delay_s=2.5)
    path = tmp_path / "short.mp4"
    concat_clips([_clip(shared_clips, n) for n in NORMALS[:2]], path, size_hw=(240, 320), fps=10)
    worker = SourceWorker(
        "cam",
        SourceConfig(url=splice[0] if pacing == "realtime" else str(path), pacing=pacing),  # type: ignore[arg-type]
        model=slow.live,
        embed=slow.embed,
        vote=slow.vote,
        windows=WindowSettings(stride_s=0.5, alert_stride_s=0.5, max_in_flight=1, max_queued=1),
        confirmation=CONFIRM,
    )
    st = _run(worker)
    cell = st["cells"][0]
    assert cell["windows_made"] == cell["windows_scored"] + cell["windows_dropped"]
    if pacing == "realtime":
        assert cell["windows_dropped"] > 0 and cell["windows_scored"] > 0
    else:
        assert cell["windows_dropped"] == 0 and cell["windows_scored"] == cell["windows_made"] > 0


def test_black_cell_is_reported_not_scored(model: _Model, shared_clips: Path, tmp_path: Path) -> None:
    wall = tmp_path / "wall.mp4"
    # three cells play, the fourth is left black (a lost feed)
    compose_wall_video(
        [[_clip(shared_clips, n)] for n in NORMALS],
        wall, rows=2, cols=2, duration_s=6,
    )  # fmt: skip
    # blank the fourth cell by cropping boxes: use a 2x2 grid on a wall whose r1c1 we paint black
    import av

    frames = []
    with av.open(str(wall)) as c:
        for f in c.decode(video=0):
            rgb = f.to_ndarray(format="rgb24")
            rgb[rgb.shape[0] // 2 :, rgb.shape[1] // 2 :] = 0
            frames.append(rgb)
    from actors.compose import write_video

    black = tmp_path / "black.mp4"
    write_video(frames, black, fps=10)
    worker = SourceWorker(
        "wall", SourceConfig(url=str(black), pacing="fast"), model=model.live, embed=model.embed, vote=model.vote,
        grid=GridSpec(2, 2, 4), confirmation=CONFIRM,
    )  # fmt: skip
    st = _run(worker)
    by_id = {c["camera_id"]: c for c in st["cells"]}
    assert by_id["wall-r1c1"]["signal"] == "black"
    assert by_id["wall-r1c1"]["windows_scored"] == 0 and by_id["wall-r1c1"]["windows_no_signal"] > 0
    assert all(by_id[c]["windows_scored"] > 0 for c in ("wall-r0c0", "wall-r0c1", "wall-r1c0"))


def test_wall_cell_alert_clip_shows_the_cell(model: _Model, shared_clips: Path, tmp_path: Path) -> None:
    """A fight in one cell of a real composed 2x2 wall: the alert's evidence clip is that cell (its size),
    re-encoded, with the whole-wall remux beside it."""
    wall = tmp_path / "wall.mp4"
    normals = [_clip(shared_clips, n) for n in NORMALS]
    fight_cell = [normals[0], _clip(shared_clips, FIGHT), normals[1]]
    compose_wall_video([[normals[2]], fight_cell, [normals[3]], [normals[0]]], wall, rows=2, cols=2)
    log_path = tmp_path / "events.jsonl"
    worker = SourceWorker(
        "wall", SourceConfig(url=str(wall), pacing="fast"), model=model.live, embed=model.embed, vote=model.vote,
        grid=GridSpec(2, 2, 4), confirmation=CONFIRM, event_log=EventLog(log_path),
        recorder=ClipRecorder(tmp_path / "clips", pre_s=2, post_s=2, margin_s=30),
        quality=QualityMonitor(
            QualitySection(drift_reference_windows=2, drift_recent_windows=2, drift_min_windows=2),
            log=EventLog(log_path), store=ReferenceStore(tmp_path / "drift"), model_version="test",
        ),
    )  # fmt: skip
    st = _run(worker)
    # every cell's scored windows fed its drift reference (the first 2, saved per model version), then its PSI
    for c in st["cells"]:
        q, scored = c["quality"], c["windows_scored"]
        assert q["drift_reference_windows"] == min(2, scored) and q["drift_reference_complete"] == (scored >= 2), c
        assert (q["score_psi"] is not None) == (scored >= 2 + 2), c
        assert (tmp_path / "drift" / "test" / f"{c['camera_id']}.json").is_file() == (scored >= 2)
        assert q["review_precision"] is None and q["reviews_counted"] == 0
    assert max(c["windows_scored"] for c in st["cells"]) >= 4  # the fight cell's playlist is the longest
    # the console's wall tile: the cell's latest analysed picture, downscaled to 320 px wide, same aspect
    import cv2

    tile = cv2.imdecode(np.frombuffer(worker.frame_jpeg("wall-r0c1") or b"", np.uint8), cv2.IMREAD_COLOR)
    x0, y0, x1, y1 = next(c["box"] for c in st["cells"] if c["camera_id"] == "wall-r0c1")
    assert tile.shape[1] <= 320 and abs(tile.shape[0] / tile.shape[1] - (y1 - y0) / (x1 - x0)) < 0.01
    assert worker.frame_jpeg("wall-r0c1") is worker.frame_jpeg("wall-r0c1")  # encoded once a second at most
    assert worker.frame_jpeg("nope") is None
    starts = [r for r in EventLog(log_path).read(limit=100) if r.kind == "start"]
    assert [s.camera_id for s in starts] == ["wall-r0c1"], starts
    # the event log holds the peak window's member probabilities (the console's event page shows them)
    assert starts[0].members and all(0.0 <= p <= 1.0 for p in starts[0].members.values())
    from nexara.media import probe

    assert starts[0].clip_path is not None
    clip = probe(starts[0].clip_path)
    # yuv420p needs even sizes: an odd side loses its last row or column
    assert (clip.width, clip.height) == ((x1 - x0) // 2 * 2, (y1 - y0) // 2 * 2)
    assert clip.duration_s >= 2.5  # pre_s + post_s = 4 s asked; measured 3.0 s for the re-encoded cell
    cell_clip = Path(starts[0].clip_path)
    assert list(cell_clip.parent.glob(cell_clip.stem + "-wall.*"))  # the whole-wall remux beside it
