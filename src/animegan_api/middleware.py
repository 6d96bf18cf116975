"""ASGI middleware that must see a request before the framework parses it."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's form parsing re-raises it to our handlers."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="the upload is too large")


class UploadLimitMiddleware:
    """Cap request bodies while they stream in, never buffering more than the cap.

    A declared ``Content-Length`` above the cap is refused before one byte of
    the body is read; a missing or lying one is caught by counting the chunks.
    Starlette's own limiter answers in plain text, which would break the
    service's single JSON error shape, hence this one.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_too_large(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_too_large(send)


async def _send_too_large(send: Send) -> None:
    body = json.dumps({"error": {"code": "upload_too_large", "message": "the upload is too large"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
