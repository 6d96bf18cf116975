"""Keys, rate limits, request ids and security headers: decided before a byte of the body is read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from animegan_api.config import Settings
from conftest import expect_error, picture_bytes

KEYED = {"api_keys": "alpha-key, beta-key"}


def _files() -> dict[str, Any]:
    return {"image": ("p.png", picture_bytes())}


async def test_keys_are_required_on_v1_only(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(**KEYED)) as client:
        missing = await client.get("/v1/styles")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.get("/v1/styles", headers={"x-api-key": "gamma-key"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        assert (await client.get("/v1/styles", headers={"authorization": "Bearer alpha-key"})).status_code == 200
        assert (await client.get("/v1/styles", headers={"x-api-key": "beta-key"})).status_code == 200
        assert (
            await client.post("/v1/transform", files=_files(), headers={"x-api-key": "beta-key"})
        ).status_code == 200
        for open_path in ("/healthz", "/readyz", "/openapi.json"):
            assert (await client.get(open_path)).status_code == 200


async def test_keys_can_come_from_a_file(
    tmp_path: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("from-file\n\n  spaced  \n")
    async with make_client(settings_for(api_keys_file=keys)) as client:
        assert (await client.get("/v1/styles", headers={"x-api-key": "from-file"})).status_code == 200
        assert (await client.get("/v1/styles", headers={"x-api-key": "spaced"})).status_code == 200
        assert (await client.get("/v1/styles", headers={"x-api-key": "other"})).status_code == 403


def test_a_missing_keys_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="api_keys_file"):
        Settings(api_keys_file=tmp_path / "absent")


async def test_keys_never_reach_the_log(
    make_client: Any, settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client(settings_for(**KEYED, log_level="debug")) as client:
        await client.get("/v1/styles", headers={"x-api-key": "alpha-key"})
        await client.get("/v1/styles", headers={"x-api-key": "wrong-secret"})
    assert "alpha-key" not in caplog.text and "wrong-secret" not in caplog.text
    assert "alpha-key" not in repr(settings_for(**KEYED))


async def test_rate_limit_is_per_key_when_keys_are_on(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(**KEYED, rate_limit_enabled=True, rate_limit="2/minute")) as client:
        alpha = [(await client.get("/v1/styles", headers={"x-api-key": "alpha-key"})).status_code for _ in range(3)]
        beta = [(await client.get("/v1/styles", headers={"x-api-key": "beta-key"})).status_code for _ in range(2)]
    assert alpha == [200, 200, 429] and beta == [200, 200]


async def test_rate_limit_is_per_address_and_ignores_forwarded_for_by_default(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(rate_limit_enabled=True, rate_limit="2/minute")) as client:
        codes = [
            (await client.get("/v1/styles", headers={"x-forwarded-for": f"198.51.100.{i}"})).status_code
            for i in range(3)
        ]
    assert codes == [200, 200, 429]  # a spoofed header does not buy a fresh budget


async def test_forwarded_for_counts_when_trusted(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(
        settings_for(rate_limit_enabled=True, rate_limit="2/minute", trust_forwarded_for=True)
    ) as client:
        first = [
            (await client.get("/v1/styles", headers={"x-forwarded-for": "198.51.100.1, 10.0.0.1"})).status_code
            for _ in range(3)
        ]
        other = (await client.get("/v1/styles", headers={"x-forwarded-for": "198.51.100.2"})).status_code
        admin = await client.post("/v1/admin/reload", headers={"x-forwarded-for": "198.51.100.3"})
    assert first == [200, 200, 429] and other == 200
    assert admin.status_code == 403  # behind a proxy, loopback peers are not loopback clients


async def test_refusals_discard_the_upload_within_the_cap(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    """A refused upload is discarded unparsed (so closing never resets the connection), never past the cap."""
    chunks_read = 0

    async def body(chunks: int) -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(chunks):
            chunks_read += 1
            yield b"x" * 65536

    headers = {"content-type": "multipart/form-data; boundary=b"}
    async with make_client(
        settings_for(**KEYED, rate_limit_enabled=True, rate_limit="1/minute", max_upload_bytes=1_000_000)
    ) as client:
        assert (await client.post("/v1/transform", content=body(10), headers=headers)).status_code == 401
        assert chunks_read == 10
        chunks_read = 0
        endless = await client.post("/v1/transform", content=body(1000), headers=headers)
        assert endless.status_code == 413 and chunks_read <= 20  # the cap stops the discarding too
        await client.get("/v1/styles", headers={"x-api-key": "alpha-key"})
        limited = await client.post("/v1/transform", content=body(4), headers={**headers, "x-api-key": "alpha-key"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz", headers={"x-request-id": "bad id; with spaces"})
    assert made.headers["x-request-id"] != "bad id; with spaces" and len(made.headers["x-request-id"]) == 16


async def test_security_headers_everywhere(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/nope"),
        await client.post("/v1/transform", files={"image": ("x", b"junk")}),
        await client.post("/v1/transform", files=_files()),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "server" not in response.headers
    docs = await client.get("/docs")
    assert docs.headers["x-content-type-options"] == "nosniff"
    policy = docs.headers["content-security-policy"]  # Swagger UI runs from this service's own assets only
    assert "script-src 'self' 'unsafe-inline';" in policy and "connect-src 'self';" in policy and "http" not in policy


async def test_unexpected_errors_hide_the_traceback_but_log_it(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any) -> Any:
        raise ZeroDivisionError("secret internals")

    client.app.state.services.registry.acquire = broken
    # Starlette re-raises after answering so the server can log it; the client only sees the answer.
    transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
        response = await raw.post("/v1/transform", files=_files(), headers={"x-request-id": "trace-me"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error (request id trace-me)"}}
    assert "secret internals" in caplog.text and "trace-me" in caplog.text


async def test_rate_limit_gives_429_with_retry_after(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(rate_limit_enabled=True, rate_limit="2/minute")) as client:
        codes = [(await client.get("/v1/styles")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = await client.get("/v1/styles")
        expect_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) > 0
        probes = [(await client.get(path)).status_code for path in ("/healthz", "/readyz") * 3]
        assert probes == [200] * 6


async def test_cors_allows_configured_origins_only(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(cors_origins="https://app.example")) as client:
        allowed = await client.get("/v1/styles", headers={"origin": "https://app.example"})
        other = await client.get("/v1/styles", headers={"origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
