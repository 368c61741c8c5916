"""`ray job submit` as a new user runs it: a real `ray start --head` (token auth on, free ports, its own
temp dir), the repository uploaded as the job's working dir (no venv in it), the entrypoint
`python -m nexara.cli features ...` run by the head's interpreter (the project venv first on its PATH,
as `make ray-head` starts it), status and logs through the job API, and a request without the token
refused. The head is stopped by PID, never with `ray stop` (which kills every Ray on the host)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pyarrow.dataset as pads
import pytest
from manifest_factory import clips_manifest

from cluster.local_head import LocalHead, auth_token, venv_bin

REPO = Path(__file__).resolve().parents[2]
CLIPS = ["fight/fi001.mp4", "noFight/nofi001.mp4", "noFight/nofi002.mp4"]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture()
def manifest(shared_clips: Path, tmp_path: Path) -> Path:
    """Three shared clips, one source each (the manifest's split needs three sources)."""
    return clips_manifest(shared_clips, CLIPS, tmp_path)


def test_features_job_on_a_ray_start_head_with_token_auth(manifest: Path, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    head = LocalHead(num_cpus=2, object_store_mb=256)
    t_start = head.start()
    try:
        # The job API refuses a request without the token (and one with a wrong token).
        assert httpx.get(f"{head.dashboard_url}/api/jobs/", timeout=30).status_code == 401
        bad = httpx.post(
            f"{head.dashboard_url}/api/jobs/",
            json={"entrypoint": "echo hi"},
            headers={"Authorization": "Bearer not-the-token"},
            timeout=30,
        )
        assert bad.status_code in (401, 403)

        client = JobSubmissionClient(head.dashboard_url, headers={"Authorization": f"Bearer {auth_token()}"})
        out = tmp_path / "features"
        t0 = time.monotonic()
        job_id = client.submit_job(
            entrypoint=f"python -m nexara.cli features {manifest} --out {out}",
            runtime_env={"working_dir": str(REPO)},
        )
        status = client.get_job_status(job_id)
        while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.monotonic() - t0 < 300, f"job still {status} after 300 s"
            time.sleep(1)
            status = client.get_job_status(job_id)
        t_job = time.monotonic() - t0
        logs = client.get_job_logs(job_id)
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        assert "3 extracted, 0 already stored, 0 failed" in logs, logs[-3000:]
        table = pads.dataset(out).to_table()
        assert table.num_rows == 3
        assert sorted(Path(p).name for p in table.column("path").to_pylist()) == sorted(Path(c).name for c in CLIPS)

        # The same answers through the `ray job` command line, as the README shows it.
        env = {**head.env(), "RAY_API_SERVER_ADDRESS": head.dashboard_url}
        cli = subprocess.run(
            [str(venv_bin() / "ray"), "job", "status", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cli.returncode == 0 and "succeeded" in cli.stdout.lower(), cli.stdout + cli.stderr
        print(f"ray start --head {t_start:.1f} s, features job {t_job:.1f} s")
    finally:
        t_stop = head.stop()
        print(f"head stopped in {t_stop:.1f} s")
    assert head.processes() == [], [p.pid for p in head.processes()]
    shutil.rmtree(head.temp_dir, ignore_errors=True)  # kept only when the test failed (Ray's logs)
