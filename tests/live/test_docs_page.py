"""/docs in a real headless Chromium with every other host cut off: all of it comes from the service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from browser import CHROMIUM_ARGS, poll
from live import Server

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
STYLE = "animeganv3_shinkai.onnx"


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("docs")
    weights = folder / "weights"
    weights.mkdir()
    for name in (STYLE, STYLE + ".json"):
        (weights / name).symlink_to((shared / "models" / name).resolve())
    running = Server(weights, folder / "server.log", "--default-style", "animeganv3_shinkai")
    try:
        yield running
    finally:
        running.stop()


def test_docs_list_every_operation_and_try_it_out_shows_the_picture(
    server: Server, shared: Path, tmp_path: Path, chromium: str
) -> None:
    from playwright.sync_api import sync_playwright

    schema = httpx.get(server.url + "/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    elsewhere: list[str] = []

    def only_this_service(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.route("**/*", only_this_service)
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() == operations
            transform = page.locator("#operations-inference-transform_v1_transform_post")
            transform.locator(".opblock-summary").click()
            transform.locator(".try-out__btn").click()
            transform.locator("input[type=file]").set_input_files(str(shared / "photos" / "landscape_01.jpg"))
            style = transform.locator("tr[data-property-name=style] input[type=text]")
            assert style.input_value() == "animeganv3_shinkai"  # the example is a style this service has
            transform.locator("tr[data-property-name=max_side] input[type=text]").fill("256")
            transform.locator(".execute").click()
            picture = transform.locator(".live-responses-table img")
            picture.wait_for(timeout=60_000)
            poll(picture, "img => img.complete && img.naturalWidth > 0")
            assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [256, 128]
            shot = Path(os.environ.get("ANIMEGAN_SCREENSHOT_DIR", tmp_path)) / "docs.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert elsewhere == [] and errors == [], (elsewhere, errors)
