from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from animegan_api.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI exports ANIMEGAN_* variables; these tests define their own."""
    for name in [n for n in os.environ if n.startswith("ANIMEGAN_")]:
        monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = Settings()
    assert settings.weights_dir == Path("weights")
    assert (settings.workers, settings.threads, settings.max_queue) == (1, 2, 8)
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert (settings.default_max_side, settings.max_side_limit, settings.max_pixels) == (512, 2048, 40_000_000)
    assert settings.request_timeout_s == 30
    assert settings.cors_origins == []


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", "/models")
    monkeypatch.setenv("ANIMEGAN_WORKERS", "2")
    monkeypatch.setenv("ANIMEGAN_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ANIMEGAN_RATE_LIMIT_ENABLED", "false")
    settings = Settings()
    assert settings.weights_dir == Path("/models")
    assert settings.workers == 2
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.rate_limit_enabled is False


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("ANIMEGAN_WORKERS", "0", "workers"),
        ("ANIMEGAN_THREADS", "many", "threads"),
        ("ANIMEGAN_RATE_LIMIT", "lots", "rate_limit"),
        ("ANIMEGAN_REQUEST_TIMEOUT_S", "-1", "request_timeout_s"),
        ("ANIMEGAN_LOG_LEVEL", "loud", "log_level"),
    ],
)
def test_bad_values_fail_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (field,)


def test_default_side_cannot_exceed_the_limit() -> None:
    with pytest.raises(ValidationError, match="default_max_side"):
        Settings(default_max_side=4096, max_side_limit=2048)
