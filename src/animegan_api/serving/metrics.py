"""The service's Prometheus series, in a registry each app owns.

Apps created side by side (tests, reloads) never collide. The HTTP layer's
:mod:`animegan_api.http.observability` counts requests into these series;
serving code observes queue and model time and the result cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._runtime_of: dict[str, str] = {}  # style -> the runtime its series is labelled with
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
        self.style_runtime = Gauge(
            "animegan_style_runtime",
            "1 for the runtime serving each loaded style (pytorch, onnxruntime, openvino).",
            ["style", "runtime"],
            registry=r,
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
        self.jobs = Gauge("animegan_jobs", "Jobs kept, by status.", ["status"], registry=r)
        self.job_queue = Gauge("animegan_job_queue_depth", "Jobs waiting for a job worker.", registry=r)
        self.job_units = Counter(
            "animegan_job_units_total",
            "Frames (video) and pictures (batch, picture) jobs finished.",
            ["kind"],
            registry=r,
        )
        self.job_duration = Histogram(
            "animegan_job_duration_seconds",
            "Time a job ran, by kind and final status.",
            ["kind", "status"],
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
            registry=r,
        )
        self.memory_waiting = Gauge("animegan_memory_waiting_requests", "Requests waiting for memory.", registry=r)

    def style_loaded(self, name: str, seconds: float, runtime: str) -> None:
        """A style (re)loaded: its load time, and the one runtime now serving it."""
        self.model_load.labels(name).set(seconds)
        previous = self._runtime_of.get(name)
        if previous is not None and previous != runtime:
            self.style_runtime.remove(name, previous)
        self.style_runtime.labels(name, runtime).set(1)
        self._runtime_of[name] = runtime

    def watch_jobs(self, census: Callable[[], dict[str, int]]) -> None:
        """Jobs by status and the queue's depth (every replica's, with a shared store), as last counted.

        The counts are taken after every change of status this replica makes and every 5 s, never
        while a scrape waits: a shared store may be slow or away.
        """
        for status in ("queued", "running", "succeeded", "failed", "canceled"):
            self.jobs.labels(status).set_function(_count_of(census, status))
        self.job_queue.set_function(lambda: census().get("queued", 0))

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


def _count_of(census: Callable[[], dict[str, int]], status: str) -> Callable[[], float]:
    return lambda: float(census().get(status, 0))
