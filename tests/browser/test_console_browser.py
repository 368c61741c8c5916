"""The console in a real browser: Debian's chromium, headless, driven by Playwright (pointed at the
system binary; nothing downloaded). An admin signs in, adds a camera on the Cameras page whose video
has a fight spliced between ordinary clips, the incident shows up in the Events list without a reload,
its evidence clip plays (the video element decodes frames), it is dismissed with a note, the app is
restarted, and the review is still there. Screenshots of every page go to
``$NEXARA_TEST_ARTIFACTS/console`` (default ``runs/test-artifacts/console``).

Run it with ``make test-slow`` or ``.venv/bin/pytest tests/browser -m slow``; it needs
``apt-get install chromium`` and about 3-6 minutes on 2 CPUs.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.compose import Segment, concat_clips

TOKEN = "browser-token-0123456789abcdef"
PASSWORD = "admin-pass-123"
NORMALS = ["nofi066.mp4", "nofi076.mp4", "nofi150.mp4"]
FIGHT = "fi003.mp4"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("NEXARA_TEST_ARTIFACTS", REPO / "runs" / "test-artifacts")) / "console"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (the browser test never downloads one)")
    return path


@pytest.fixture(scope="module")
def app(ray_local: None, shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from nexara.config import NexaraConfig
    from nexara.users import add_user
    from serve.builder import run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    base = tmp_path_factory.mktemp("browser")
    users = base / "users.json"
    add_user(users, "ada", "admin", PASSWORD)
    clips = [str(next(shared_clips.rglob(n))) for n in NORMALS]
    video = base / "splice.mp4"  # H.264 (libx264): the evidence clip is remuxed from it, so a browser plays it
    segments: list[Segment] = concat_clips(
        [*clips, str(next(shared_clips.rglob(FIGHT))), *clips[::-1]], video, size_hw=(240, 320), fps=10
    )
    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "port": _free_port(),
                "source_policy": {"file_roots": [str(base)]},
                "console": {"users_file": str(users)},
            },
            "sinks": {"run_dir": str(base / "run"), "clip_pre_s": 2, "clip_post_s": 2},
        }
    )
    run_dir = base / "run"
    run_local(cfg, run_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield {
        "cfg": cfg,
        "run_dir": run_dir,
        "video": video,
        "segments": segments,
        "url": f"http://127.0.0.1:{cfg.serve.port}",
    }
    serve.shutdown()


def _restart(cfg: Any, run_dir: Path) -> None:
    """Stop the whole app (cameras too), then start it again on the same run folder."""
    import ray
    from ray import serve

    from actors.stream_actor import get_manager
    from serve.builder import run_local

    try:
        ray.kill(get_manager(cfg.serve.app_name))
    except ValueError:
        pass
    serve.shutdown()
    run_local(cfg, run_dir)


def test_sign_in_live_event_clip_plays_dismiss_survives_restart(app: dict[str, Any], chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = app["url"]
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--mute-audio"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/ui/")
        page.locator("#login-name").fill("ada")
        page.locator("#login-password").fill("wrong-password")
        page.locator("#login-submit").click()
        expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
        page.locator("#login-password").fill(PASSWORD)
        page.screenshot(path=ARTIFACTS / "01-sign-in.png")
        page.locator("#login-submit").click()
        expect(page.locator("#who")).to_contain_text("ada (admin)")

        # Cameras page: add the spliced stream through the form
        page.goto(f"{url}/ui/#/cameras")
        page.locator("#cam-id").fill("lobby")
        page.locator("#cam-url").fill(str(app["video"]))
        page.locator("#add-camera button").click()
        expect(page.locator("#cameras tr[data-source='lobby']")).to_be_visible(timeout=120_000)
        page.screenshot(path=ARTIFACTS / "02-cameras.png")

        page.goto(f"{url}/ui/#/wall")
        expect(page.locator(".tile[data-camera='lobby'] svg.spark polyline")).to_have_count(1)
        # (predicates are functions: the page's CSP forbids evaluating strings)
        # three scores in the sparkline: the tile follows the live status
        spark = "document.querySelector(\".tile[data-camera='lobby'] polyline\")"
        page.wait_for_function(f"() => {spark}?.getAttribute('points').split(' ').length >= 3", timeout=120_000)
        page.screenshot(path=ARTIFACTS / "03-wall.png")

        # Events: the incident arrives over server-sent events, with no reload of the page
        page.goto(f"{url}/ui/#/events")
        page.evaluate("() => { window.__notReloaded = true; }")
        row = page.locator("#event-rows tr.row").first
        expect(row).to_be_visible(timeout=300_000)
        assert page.evaluate("() => window.__notReloaded === true")
        event_id = row.get_attribute("data-event")
        assert event_id
        page.screenshot(path=ARTIFACTS / "04-events.png")

        # the evidence clip is written clip_post_s after the alert start: wait for it, then open the event
        deadline = time.monotonic() + 120
        while api.get(f"/v1/events/{event_id}/clip").status_code != 200:
            assert time.monotonic() < deadline, "the evidence clip was never written"
            time.sleep(1)
        row.click()
        video = page.locator("#clip")
        expect(video).to_be_visible()
        page.wait_for_function("() => document.getElementById('clip').readyState >= 2", timeout=60_000)
        page.evaluate("() => document.getElementById('clip').play()")
        page.wait_for_function("() => document.getElementById('clip').currentTime > 0.5", timeout=30_000)
        frames = page.evaluate(
            """() => new Promise((resolve) => {
                const v = document.getElementById('clip');
                v.requestVideoFrameCallback((now, meta) => resolve(meta.presentedFrames));
            })"""
        )
        assert frames >= 1
        size = page.evaluate(
            "() => [document.getElementById('clip').videoWidth, document.getElementById('clip').videoHeight]"
        )
        assert size == [320, 240]
        expect(page.locator("#trace polyline.peak")).to_have_count(1)
        # the page follows the incident live: its end arrives over SSE and the details show it
        expect(page.locator("#details")).to_contain_text("ended", timeout=120_000)
        assert page.locator("#trace circle.peak").count() >= 2
        page.screenshot(path=ARTIFACTS / "05-event.png")

        page.locator("#review-note").fill("two people hugging, not a fight")
        page.locator("#dismiss").click()
        expect(page.locator("#review-state")).to_contain_text("dismissed by ada")

        _restart(app["cfg"], app["run_dir"])
        page.reload()  # the signed session survives: its secret lives in the run folder
        expect(page.locator("#review-state")).to_contain_text("dismissed by ada", timeout=120_000)
        expect(page.locator("#review-state")).to_contain_text("two people hugging")
        page.goto(f"{url}/ui/#/events")
        page.locator("#f-review").select_option("unreviewed")
        expect(page.locator(f"#event-rows tr[data-event='{event_id}']")).to_have_count(0)
        page.locator("#f-review").select_option("dismissed")
        expect(page.locator(f"#event-rows tr[data-event='{event_id}']")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "06-events-after-restart.png")
        browser.close()
    reviews = api.get(f"/v1/events/{event_id}/reviews").json()["reviews"]
    assert [(r["verdict"], r["user"]) for r in reviews] == [("dismissed", "ada")]
    api.close()
