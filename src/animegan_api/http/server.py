"""Running the app under uvicorn with a drain before shutdown.

Plain uvicorn closes its listening socket on SIGTERM, so a load balancer
sees refused connections instead of a failing readiness probe, and queued
requests race the shutdown. Here the first SIGTERM (or SIGINT) only marks the
app as draining: ``/readyz`` and new requests answer 503 at once, admitted
requests finish, and uvicorn's own shutdown starts when none is left or the
drain timeout passes. A second signal falls back to uvicorn's behaviour.
"""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from animegan_api.config import Settings
from animegan_api.http.app import services_of
from animegan_api.http.protocol import bounded_head_protocol

__all__ = ["DrainingServer", "serve"]

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_timeout_s = drain_timeout_s
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        services = services_of(self.app)
        if services is None:  # still starting: nothing admitted, nothing to drain
            super().handle_exit(sig, frame)
            return
        self.drain_deadline = time.monotonic() + self.drain_timeout_s
        services.draining = True
        log.info("signal %d: draining for up to %.0f s before shutdown", sig, self.drain_timeout_s)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None:
            services = services_of(self.app)
            busy = services.engine.admitted if services is not None else 0
            if busy == 0 or time.monotonic() >= self.drain_deadline:
                log.info("drained (%d request(s) still admitted); shutting down", busy)
                return True
        return await super().on_tick(counter)


def serve(app: FastAPI, settings: Settings) -> None:
    """Serve until a signal, drain, then shut down; returns normally (exit status 0)."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=bounded_head_protocol(settings.max_head_bytes, settings.head_timeout_s),
        server_header=False,
        log_config=None,  # logs.configure owns the handlers
        access_log=False,  # observability.ObservabilityMiddleware writes one richer line per request
        proxy_headers=False,  # X-Forwarded-For is honoured only through the trust_forwarded_for setting
        timeout_graceful_shutdown=max(1, int(settings.request_timeout_s)),
    )
    DrainingServer(config, app, settings.drain_timeout_s).run()
