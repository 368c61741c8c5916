"""The motion statistics of five real CCTV clips stay what they were before the restructuring.

``tests/fixtures/motion_reference.npz`` holds the vectors ``nexara.motion.clip_motion`` gave at commit
4ce259a (motion ``flow-v2``; spec hash in the file) for the clips the research parity was measured on
(``clips``, under the shared ``surveillance-fight`` folder; their ~10 fps sampling picks the same frames
as the research code). The shipped model was trained on these statistics, so a change here means
retraining; the research vectors themselves exist only on the research machine and are not needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nexara.motion import MOTION_VERSION, MotionSpec, clip_motion

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "fixtures" / "motion_reference.npz"
SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS = SHARED / "data" / "surveillance-fight"

_REF = np.load(REFERENCE)


@pytest.mark.parametrize("index", range(len(_REF["clips"])), ids=[str(c) for c in _REF["clips"]])
def test_motion_statistics_match_the_reference(index: int) -> None:
    assert str(_REF["version"]) == MOTION_VERSION and str(_REF["spec_hash"]) == MotionSpec().hash()
    clip = CLIPS / str(_REF["clips"][index])
    assert clip.is_file(), f"shared clip {clip} missing (set NEXARA_SHARED to the shared folder)"
    np.testing.assert_allclose(clip_motion(clip), _REF["vectors"][index], rtol=1e-4, atol=1e-5)
