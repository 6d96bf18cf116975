"""The one access line per request, and the request series, for every request whoever answered it.

The ASGI middleware here sees every request, including those refused by the
middleware further in, and reads what the routes recorded on
``scope["state"]`` (style, timings, error code) to label the series and write
the access log line that replaces uvicorn's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from animegan_api.serving.metrics import Metrics

__all__ = ["ObservabilityMiddleware", "access_log"]

access_log = logging.getLogger("animegan_api.access")


class ObservabilityMiddleware:
    """Counts, times and logs every HTTP request once, whoever answered it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def observe(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self._record(scope, status, time.perf_counter() - started, sent)

    def _record(self, scope: Scope, status: int, elapsed: float, sent: int) -> None:
        state = scope.get("state", {})
        route = _route_template(scope)
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed)
        if status >= 400 and (code := state.get("error_code")):
            self.metrics.rejected.labels(code).inc()
        client = scope.get("client")
        access_log.info(
            "%s %s %d %.1f ms",
            method,
            scope["path"],
            status,
            elapsed * 1000,
            extra={
                "fields": {
                    "request_id": state.get("request_id"),
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                    "style": state.get("style"),
                    "in_size": state.get("in_size"),
                    "out_size": state.get("out_size"),
                    "bytes_out": sent,
                    "queue_ms": state.get("queue_ms"),
                    "inference_ms": state.get("inference_ms"),
                    "memory_bytes": state.get("memory_bytes"),
                    "error": state.get("error_code"),
                    "client": client[0] if client else None,
                }
            },
        )


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so labels stay few whatever paths clients send.

    The router leaves its match in ``scope["route"]``; only requests refused
    before routing (keys, rate limit, capacity, upload cap) are matched here.
    """
    if (routed := scope.get("route")) is not None:
        return str(getattr(routed, "path", "unmatched"))
    app = scope.get("app")
    return _match_template(getattr(app, "routes", ()), scope) or "unmatched"


def _match_template(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """Walk the routes, into included routers too (FastAPI keeps each as one node with no path of its own)."""
    for route in routes:
        if (included := getattr(route, "original_router", None)) is not None:
            if (found := _match_template(included.routes, scope)) is not None:
                return found
            continue
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return None
