"""ASGI middleware that must see a request before the framework parses its body.

Authentication, rate limiting, capacity and the upload cap all decide on
headers alone, so a refused client's upload is never parsed or spooled.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

from limits import RateLimitItem, parse_many
from slowapi import Limiter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from animegan_api.http import errors
from animegan_api.http.errors import ApiError
from animegan_api.http.security import client_address, key_identity, matches_any, presented_key

__all__ = ["DOCS_ASSETS", "GuardMiddleware", "ResponseHeadersMiddleware", "UploadLimitMiddleware"]

DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's scripts, styles and icon, served by the app itself
_DOCS_PAGES = ("/docs", "/redoc")  # with DOCS_ASSETS and /docs/oauth2-redirect under the first
_INFERENCE_PATHS = ("/v1/transform", "/v1/compare")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
# The demo page runs only its own files; pictures and the source video are shown from blob: URLs it makes itself.
_PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)
# Swagger UI and ReDoc: their scripts from this service, plus the inline script FastAPI's page starts them
# with and the inline styles they set; pictures from "Try it out" are blob: URLs, ReDoc's worker one too.
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' blob: data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's form parsing re-raises it to our handlers."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="the upload is too large")


class _BodyTimeout(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=408, detail="the request body arrived too slowly")


class UploadLimitMiddleware:
    """Cap request bodies while they stream in, and time out bodies that stall.

    A declared ``Content-Length`` above the cap is refused before one byte of
    the body is read; a missing or lying one is caught by counting the chunks.
    Starlette's own limiter answers in plain text, which would break the
    service's single JSON error shape, hence this one.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, chunk_timeout_s: float, job_max_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.job_max_bytes = max(job_max_bytes, max_bytes)  # POST /v1/jobs takes videos and batches
        self.chunk_timeout_s = chunk_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.job_max_bytes if scope["path"] == "/v1/jobs" else self.max_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            await _answer(scope, send, ApiError("upload_too_large", "the upload is too large"), close=True)
            return
        received = 0
        body_done = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # later reads only wait for a disconnect, which may take as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.chunk_timeout_s)
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > cap:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (_BodyTooLarge, _BodyTimeout) as exc:
            if started:
                raise
            code = "upload_too_large" if isinstance(exc, _BodyTooLarge) else "body_timeout"
            await _answer(scope, send, ApiError(code, exc.detail), close=True)


class GuardMiddleware:
    """API keys and rate limits for ``/v1/*``, decided on headers before the body is read.

    Keys are compared in constant time and never logged; the rate limit is
    counted per API key when keys are on, else per client address (from
    ``X-Forwarded-For`` only when the operator trusts a proxy in front).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: frozenset[str],
        limiter: Limiter,
        rate_limit: str,
        trust_forwarded_for: bool,
    ) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.limiter = limiter
        self.limits: list[RateLimitItem] = parse_many(rate_limit)
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        identity = client_address(scope, headers, self.trust_forwarded_for)
        if self.keys and not scope["path"].startswith("/v1/admin/"):  # admin routes check their own key
            presented = presented_key(headers)
            if not presented:
                message = "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key'"
                await _refuse(scope, receive, send, ApiError("unauthorized", message, {"WWW-Authenticate": "Bearer"}))
                return
            if not matches_any(presented, self.keys):
                await _refuse(scope, receive, send, ApiError("forbidden", "unknown API key"))
                return
            identity = key_identity(presented)
        if self.limiter.enabled and (retry_after := self._over_limit(identity)) is not None:
            limited = ApiError(
                "rate_limited", f"rate limit exceeded ({self.limits[0]})", {"Retry-After": str(retry_after)}
            )
            await _refuse(scope, receive, send, limited)
            return
        if scope["path"] in _INFERENCE_PATHS and (refusal := _capacity_refusal(scope["app"].state)):
            await _refuse(scope, receive, send, refusal)
            return
        await self.app(scope, receive, send)

    def _over_limit(self, identity: str) -> int | None:
        backend = self.limiter.limiter
        for item in self.limits:
            if not backend.hit(item, "v1", identity):
                reset_at, _ = backend.get_window_stats(item, "v1", identity)
                return max(1, int(reset_at - time.time() + 0.999))
        return None


class ResponseHeadersMiddleware:
    """A request id on every request and response, and security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        extra = _csp_for(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in [*_SECURITY_HEADERS, *extra]:
                    headers[name.decode()] = value.decode()
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    """Discard the rest of the upload, then answer.

    Closing a connection with unread bytes makes the kernel send a reset, which
    can destroy the answer before the client reads it. Discarding costs no
    parsing or spooling, and the upload cap (outside this middleware) bounds it.
    """
    while (message_in := await receive())["type"] == "http.request" and message_in.get("more_body", False):
        pass
    await _answer(scope, send, error)


async def _answer(scope: Scope, send: Send, error: ApiError, close: bool = False) -> None:
    scope.setdefault("state", {})["error_code"] = error.code
    await errors.send(send, error, close=close)


def _capacity_refusal(state: object) -> ApiError | None:
    """Refuse at the door, before the upload is read, when the engine is full or the service is draining.

    The route's own admission stays the exact check; this one only spares a
    refused client's upload from being parsed, which keeps 503s fast under load.
    """
    services = getattr(state, "services", None)
    if services is None:
        return None
    if services.draining:
        return ApiError("shutting_down", errors.SHUTTING_DOWN, {"Retry-After": "1"})
    if services.engine.full:
        return ApiError(
            "overloaded",
            "the service is at capacity; retry shortly",
            {"Retry-After": str(services.settings.retry_after_s)},
        )
    return None


def _csp_for(path: str) -> list[tuple[bytes, bytes]]:
    """The docs pages and the demo page each get a policy that lets them run; every other answer runs nothing."""
    if path.startswith(_DOCS_PAGES):
        return [_DOCS_CSP]
    if path == "/" or path.startswith("/static/"):
        return [_PAGE_CSP]
    return [_CSP]
