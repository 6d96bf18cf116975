"""Debian's Chromium for the browser tests: where it is, and the flags it runs headless with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = ["CHROMIUM_ARGS", "chromium"]

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
    """The browser's path; a skip where there is none, a failure where ANIMEGAN_REQUIRE_BROWSER=1."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "no Chromium found (apt-get install chromium)"
    if os.environ.get("ANIMEGAN_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " and ANIMEGAN_REQUIRE_BROWSER=1")
    pytest.skip(message)
