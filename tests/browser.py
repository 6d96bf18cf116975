"""Debian's Chromium for the browser tests: where it is, and the flags it runs headless with."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM_ARGS", "chromium", "poll"]

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


def poll(target: Any, expression: str, timeout_s: float = 10) -> None:
    """Wait for ``expression`` (on a page, or a function of a locator's element) to hold.

    Playwright's ``wait_for_function`` polls with an eval, which the pages' CSP forbids (it only gets
    away with it when the first check already holds); ``evaluate`` is not an eval and is allowed.
    """
    deadline = time.monotonic() + timeout_s
    while not target.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        time.sleep(0.1)  # the page is another process: there is no event to wait on from here


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; a skip where there is none, a failure where ANIMEGAN_REQUIRE_BROWSER=1."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "no Chromium found (apt-get install chromium)"
    if os.environ.get("ANIMEGAN_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " and ANIMEGAN_REQUIRE_BROWSER=1")
    pytest.skip(message)
