"""ASGI middleware that must see a request before the framework parses its body.

Authentication, rate limiting, capacity and the upload cap all decide on
headers alone, so a refused client's upload is never parsed or spooled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from limits import RateLimitItem, parse_many
from slowapi import Limiter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
INFERENCE_PATHS = ("/v1/transform", "/v1/compare")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
# The demo page runs only its own files; pictures are shown from blob: URLs it makes itself.
_PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's form parsing re-raises it to our handlers."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="the upload is too large")


class BodyTimeout(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=408, detail="the request body arrived too slowly")


async def send_json_error(send: Send, status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class UploadLimitMiddleware:
    """Cap request bodies while they stream in, and time out bodies that stall.

    A declared ``Content-Length`` above the cap is refused before one byte of
    the body is read; a missing or lying one is caught by counting the chunks.
    Starlette's own limiter answers in plain text, which would break the
    service's single JSON error shape, hence this one.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, chunk_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.chunk_timeout_s = chunk_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            scope.setdefault("state", {})["error_code"] = "upload_too_large"
            await send_json_error(send, 413, "upload_too_large", "the upload is too large", [(b"connection", b"close")])
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
                raise BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if started:
                raise
            code = "upload_too_large" if isinstance(exc, BodyTooLarge) else "body_timeout"
            scope.setdefault("state", {})["error_code"] = code
            await send_json_error(send, exc.status_code, code, exc.detail, [(b"connection", b"close")])


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
                await _refuse(scope, receive, send, 401, "unauthorized", "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key'", [(b"www-authenticate", b"Bearer")])
                return
            if not self._known(presented):
                await _refuse(scope, receive, send, 403, "forbidden", "unknown API key")
                return
            identity = "key:" + hashlib.sha256(presented.encode()).hexdigest()[:16]
        if self.limiter.enabled and (retry_after := self._over_limit(identity)) is not None:
            await _refuse(
                scope, receive, send, 429, "rate_limited", f"rate limit exceeded ({self.limits[0]})", [(b"retry-after", str(retry_after).encode())]
            )
            return
        if scope["path"] in INFERENCE_PATHS and (refusal := _capacity_refusal(scope["app"].state)):
            await _refuse(scope, receive, send, 503, *refusal)
            return
        await self.app(scope, receive, send)

    def _known(self, presented: str) -> bool:
        candidate = presented.encode()
        return any([hmac.compare_digest(candidate, key) for key in self.keys])  # no early exit: constant time

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


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Discard the rest of the upload, then answer.

    Closing a connection with unread bytes makes the kernel send a reset, which
    can destroy the answer before the client reads it. Discarding costs no
    parsing or spooling, and the upload cap (outside this middleware) bounds it.
    """
    while (message_in := await receive())["type"] == "http.request" and message_in.get("more_body", False):
        pass
    scope.setdefault("state", {})["error_code"] = code
    await send_json_error(send, status, code, message, headers)


def _capacity_refusal(state: Any) -> tuple[str, str, list[tuple[bytes, bytes]]] | None:
    """Refuse at the door, before the upload is read, when the engine is full or the service is draining.

    The route's own admission stays the exact check; this one only spares a
    refused client's upload from being parsed, which keeps 503s fast under load.
    """
    if getattr(state, "draining", False):
        return "shutting_down", "the service is shutting down; retry on another instance", [(b"retry-after", b"1")]
    engine = getattr(state, "engine", None)
    if engine is not None and engine.admitted >= engine.workers + engine.max_queue:
        retry_after = str(state.settings.retry_after_s).encode()
        return "overloaded", "the service is at capacity; retry shortly", [(b"retry-after", retry_after)]
    return None


def _csp_for(path: str) -> list[tuple[bytes, bytes]]:
    """Swagger UI loads its own assets, so /docs gets none; the demo page gets one for itself."""
    if path.startswith(DOCS_PATHS):
        return []
    if path == "/" or path.startswith("/static/"):
        return [_PAGE_CSP]
    return [_CSP]


def client_address(scope: Scope, headers: Headers, trust_forwarded_for: bool) -> str:
    """The client's address: the first X-Forwarded-For hop only when a trusted proxy sets it."""
    if trust_forwarded_for and (forwarded := headers.get("x-forwarded-for")):
        return forwarded.split(",")[0].strip()
    client: Any = scope.get("client")
    return client[0] if client else "unknown"


def presented_key(headers: Headers) -> str:
    """The key a client sent, as ``X-API-Key`` or ``Authorization: Bearer``; empty if none."""
    if key := headers.get("x-api-key", "").strip():
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
