"""The demo page in a real headless Chromium (Debian's), driven by Playwright, against real uvicorn."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from browser import CHROMIUM_ARGS, poll
from live import Server

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("browser") / "server.log"
    running = Server(shared / "models", log, "--default-style", "animeganv3_shinkai")
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def demo_page(server: Server, chromium: str) -> Iterator[tuple[Any, list[str]]]:
    """The demo page on a phone-sized screen, styles loaded, with the console errors it logs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PHONE)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url)
        poll(page, "document.querySelectorAll('#style option').length === 4")
        try:
            yield page, console_errors
        finally:
            browser.close()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    return Path(os.environ.get("ANIMEGAN_SCREENSHOT_DIR", tmp_path)) / name


def test_demo_page_converts_a_photo_on_a_phone_sized_screen(
    server: Server, shared: Path, tmp_path: Path, chromium: str
) -> None:
    with demo_page(server, chromium) as (page, console_errors):
        assert page.eval_on_selector("#style", "s => s.value") == "animeganv3_shinkai"
        page.select_option("#max-side", "256")
        page.set_input_files("#file", str(shared / "photos" / "landscape_01.jpg"))
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        poll(page, "document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0")
        assert page.is_hidden("#progress") and page.is_hidden("#error")
        size = page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]")
        assert size == [256, 128]  # 1280x672 at 256, rounded down to multiples of 8
        page.fill("#slider", "20")
        assert "20%" in page.eval_on_selector("#after", "img => img.style.clipPath")
        assert page.eval_on_selector("#download", "a => a.href").startswith("blob:")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        assert re.fullmatch(r"Styled in [0-9.]+ (ms|s)", page.inner_text("#timing")), page.inner_text("#timing")
        screenshot = screenshot_path(tmp_path, "demo.png")
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000

        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        page.click("#go")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "not a supported picture" in page.inner_text("#error")
    assert not [e for e in console_errors if "415" not in e], console_errors


def test_demo_page_avatar_mode_shows_the_faces_and_picks_another(
    server: Server, shared: Path, tmp_path: Path, chromium: str
) -> None:
    with demo_page(server, chromium) as (page, console_errors):
        page.check("input[name=mode][value=avatar]")
        assert page.is_visible("#face-field") and page.inner_text("#go") == "Make avatar"
        page.select_option("#max-side", "256")
        page.set_input_files("#file", str(shared / "photos" / "group_01.jpg"))
        page.click("#go")
        page.wait_for_selector("#avatar-result:not([hidden])", timeout=60_000)
        poll(page, "document.querySelectorAll('.face-box').length === 3")
        assert "3 faces found" in page.inner_text("#faces-text")
        assert page.eval_on_selector("#avatar", "img => [img.naturalWidth, img.naturalHeight]") == [256, 256]
        assert re.fullmatch(r"Styled in [0-9.]+ (ms|s)", page.inner_text("#avatar-timing"))
        first = page.eval_on_selector("#avatar", "img => img.src")
        page.click(".face-box >> nth=2")
        poll(page, f"document.getElementById('avatar').src !== {first!r}", timeout_s=60)
        poll(page, "document.querySelector('.face-box.chosen span').textContent === '3'")
        assert page.eval_on_selector("#face", "s => s.value") == "2"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(screenshot_path(tmp_path, "demo-avatar.png")), full_page=True)

        page.set_input_files("#file", str(shared / "photos" / "landscape_01.jpg"))
        page.click("#go")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "no face found" in page.inner_text("#error")
    assert not [e for e in console_errors if "422" not in e], console_errors


def test_demo_page_video_mode_follows_the_job_and_plays_the_result(
    server: Server, shared: Path, tmp_path: Path, chromium: str
) -> None:
    with demo_page(server, chromium) as (page, console_errors):
        page.check("input[name=mode][value=job]")
        assert page.inner_text("#go") == "Start job"
        page.select_option("#max-side", "256")
        page.set_input_files("#file", str(shared / "videos" / "carphone_pristine.mp4"))
        page.click("#go")
        widths: set[float] = set()
        deadline = time.monotonic() + 120
        while page.is_hidden("#job-result"):
            assert time.monotonic() < deadline and page.is_hidden("#error"), page.inner_text("#error")
            if "Converting" in page.inner_text("#progress-text"):
                widths.add(page.evaluate("parseFloat(document.getElementById('bar-fill').style.width)"))
            page.wait_for_timeout(50)
        assert len({w for w in widths if 0 < w < 100}) >= 2, widths  # the bar moved while the job ran
        assert re.fullmatch(r"120 frames in [0-9.]+ s", page.inner_text("#job-timing")), page.inner_text("#job-timing")
        page.evaluate("document.getElementById('job-video').play()")
        poll(page, "document.getElementById('job-video').currentTime > 0.5", timeout_s=20)
        size = page.eval_on_selector("#job-video", "v => [v.videoWidth, v.videoHeight]")
        assert size == [176, 144]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(screenshot_path(tmp_path, "demo-video.png")), full_page=True)

        page.set_input_files("#file", str(shared / "videos" / "bigbuckbunny.mp4"))
        page.click("#go")
        poll(page, "document.getElementById('progress-text').textContent.startsWith('Converting')", timeout_s=60)
        page.click("#cancel")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert page.inner_text("#error") == "The job was canceled."
    assert not console_errors, console_errors
