"""The demo page in a real headless Chromium (Debian's), driven by Playwright, against real uvicorn."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from live import Server

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "no Chromium found (apt-get install chromium)"
    if os.environ.get("ANIMEGAN_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " and ANIMEGAN_REQUIRE_BROWSER=1")
    pytest.skip(message)


def test_demo_page_converts_a_photo_on_a_phone_sized_screen(shared: Path, tmp_path: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    server = Server(shared / "models", tmp_path / "server.log", "--default-style", "animeganv3_shinkai")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=PHONE)
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url)
            page.wait_for_function("document.querySelectorAll('#style option').length === 4")
            assert page.eval_on_selector("#style", "s => s.value") == "animeganv3_shinkai"
            page.select_option("#max-side", "256")
            page.set_input_files("#file", str(shared / "photos" / "landscape_01.jpg"))
            page.click("#go")
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            page.wait_for_function(
                "document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0"
            )
            assert page.is_hidden("#progress") and page.is_hidden("#error")
            size = page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [256, 128]  # 1280x672 at 256, rounded down to multiples of 8
            page.fill("#slider", "20")
            assert "20%" in page.eval_on_selector("#after", "img => img.style.clipPath")
            assert page.eval_on_selector("#download", "a => a.href").startswith("blob:")
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
            screenshot = Path(os.environ.get("ANIMEGAN_SCREENSHOT_DIR", tmp_path)) / "demo.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000

            page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
            page.click("#go")
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            assert "not a supported picture" in page.inner_text("#error")
            browser.close()
        assert not [e for e in console_errors if "415" not in e], console_errors
    finally:
        server.stop()
