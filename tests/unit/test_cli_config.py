"""`nexara config validate` is instant: it imports neither torch nor Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
from nexara.cli import main
rc = main(["config", "validate", "ray_config.yaml"])
heavy = sorted(m for m in ("torch", "ray", "torchvision", "sklearn", "av", "cv2") if m in sys.modules)
print("HEAVY", ",".join(heavy))
raise SystemExit(rc)
"""


def test_config_validate_imports_no_torch_and_no_ray() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "config OK: ray_config.yaml" in proc.stdout
    assert "HEAVY \n" in proc.stdout, proc.stdout
