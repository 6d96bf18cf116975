"""The service's one error shape: ``{"error": {"code": ..., "message": ...}}``.

Every refusal, whether a middleware sends it before the body is read, a
route raises it, or the layers below raise a :class:`~animegan_api.failures.Refusal`,
is built here from its stable code, whose status comes from one table, so a
code can never be sent with two different statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from animegan_api.failures import Refusal

__all__ = [
    "NOT_READY",
    "SHUTTING_DOWN",
    "STATUS",
    "ApiError",
    "body",
    "install_handlers",
    "response",
    "send",
    "status_of",
]

log = logging.getLogger(__name__)

STATUS: dict[str, int] = {
    "bad_request": 400,
    "corrupt_image": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_style": 404,
    "method_not_allowed": 405,
    "body_timeout": 408,
    "head_timeout": 408,
    "upload_too_large": 413,
    "image_too_large": 413,
    "too_large_for_memory": 413,
    "too_large_for_deadline": 413,
    "unsupported_image": 415,
    "unsupported_format": 415,
    "video_too_long": 413,
    "video_too_large": 413,
    "archive_too_large": 413,
    "invalid_video": 422,
    "invalid_archive": 422,
    "job_not_found": 404,
    "job_not_finished": 409,
    "range_not_satisfiable": 416,
    "insufficient_storage": 507,
    "no_face": 422,
    "invalid_request": 422,
    "rate_limited": 429,
    "request_headers_too_large": 431,
    "client_closed_request": 499,
    "inference_failed": 500,
    "internal_error": 500,
    "overloaded": 503,
    "not_ready": 503,
    "shutting_down": 503,
    "style_unavailable": 503,
    "jobs_unavailable": 503,
    "deadline_exceeded": 504,
}
_CODE_FOR_HTTP_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "upload_too_large",
}

SHUTTING_DOWN = "the service is shutting down; retry on another instance"
NOT_READY = "no model is loaded and warmed"


class ApiError(Refusal):
    """A refusal the HTTP layer itself makes (keys, rate limit, readiness); its code fixes the status too."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(code, message, headers)
        self.status = STATUS[code]


def status_of(refusal: Refusal) -> int:
    """The one place a refusal's code becomes an HTTP status."""
    return STATUS[refusal.code]


def body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def response(error: Refusal) -> JSONResponse:
    return JSONResponse({"error": {"code": error.code, "message": error.message}}, status_of(error), error.headers)


async def send(send: Send, error: Refusal, *, close: bool = False) -> None:
    """Answer from ASGI middleware, before (or instead of) the app, with the same body a route would give."""
    payload = body(error.code, error.message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status_of(error), "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def install_handlers(app: FastAPI) -> None:
    """Route errors, framework HTTP errors and bugs all leave as the one JSON shape."""
    app.add_exception_handler(Refusal, _refusal)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refusal)
    request.state.error_code = exc.code
    return response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_FOR_HTTP_STATUS.get(exc.status_code, "http_error")
    request.state.error_code = code
    content = {"error": {"code": code, "message": str(exc.detail)}}
    return JSONResponse(content, exc.status_code, dict(exc.headers or {}))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's field validation in the service's shape: each field and what is wrong, never the value sent.

    FastAPI's own body echoes the input, which for an upload is the whole file.
    """
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": _field(error["loc"]), "message": str(error["msg"])} for error in exc.errors()]
    message = "; ".join(f"{field['field']}: {field['message']}" for field in fields) or "invalid request"
    request.state.error_code = "invalid_request"
    content = {"error": {"code": "invalid_request", "message": message, "fields": fields}}
    return JSONResponse(content, STATUS["invalid_request"])


def _field(location: tuple[int | str, ...]) -> str:
    """``("body", "max_side")`` -> ``max_side``; the part of the request alone where no field is named."""
    named = [str(part) for part in location[1:]]
    return ".".join(named) if named else str(location[0]) if location else "request"


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.exception("unhandled error on %s %s (request id %s)", request.method, request.url.path, request_id)
    return await _refusal(request, ApiError("internal_error", f"internal error (request id {request_id})"))
