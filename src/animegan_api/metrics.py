"""Prometheus metrics and the one-line-per-request access log.

Each app owns its registry, so apps created side by side (tests, reloads)
never collide. The ASGI middleware here sees every request, including those
refused by the middleware further in, and reads what the routes recorded on
``scope["state"]`` (style, timings, error code) to label the series and write
the access log line that replaces uvicorn's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("animegan_api.access")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and friends
        r = self.registry
        self.requests = Counter(
            "animegan_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "animegan_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "animegan_queue_wait_seconds",
            "Time a request waited for an inference slot.",
            ["style"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "animegan_inference_seconds",
            "Model forward time per request.",
            ["style"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "animegan_rejected_total", "Requests refused, by reason (the error code).", ["reason"], registry=r
        )
        self.model_load = Gauge(
            "animegan_model_load_seconds", "Time the style's model took to load and warm up.", ["style"], registry=r
        )
        self.cache_lookups = Counter(
            "animegan_cache_lookups_total", "Result cache lookups by result (hit, miss).", ["result"], registry=r
        )
        self.cache_bytes = Gauge("animegan_cache_bytes", "Bytes of pictures held by the result cache.", registry=r)
        self.in_flight = Gauge("animegan_in_flight_requests", "Requests running inference now.", registry=r)
        self.queued = Gauge("animegan_queued_requests", "Requests admitted and waiting for a slot.", registry=r)
        self.memory_budget = Gauge("animegan_memory_budget_bytes", "Memory the process may use.", registry=r)
        self.memory_reserved = Gauge(
            "animegan_memory_reserved_bytes", "Memory admitted requests have reserved.", registry=r
        )
        self.memory_waiting = Gauge("animegan_memory_waiting_requests", "Requests waiting for memory.", registry=r)

    def watch_engine(self, engine: Any, cache: Any) -> None:
        self.in_flight.set_function(lambda: engine.running)
        self.queued.set_function(lambda: engine.waiting)
        self.cache_bytes.set_function(lambda: cache.size_bytes)
        if (budget := engine.budget) is not None:
            self.memory_budget.set_function(lambda: budget.total)
            self.memory_reserved.set_function(lambda: budget.reserved)
            self.memory_waiting.set_function(lambda: budget.waiting)

    def observe_inference(self, style: str, queue_s: float, inference_s: float) -> None:
        self.queue_wait.labels(style).observe(queue_s)
        self.inference.labels(style).observe(inference_s)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


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
