"""Application factory and lifespan.

Nothing happens at import time: ``create_app`` wires middleware and routes;
the lifespan fixes torch's thread counts, loads and warms the models and
creates the app's :class:`~animegan_api.serving.services.Services` on
``app.state.services``, and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from PIL import Image
from slowapi import Limiter
from slowapi.util import get_remote_address

from animegan_api import __version__
from animegan_api.config import Settings
from animegan_api.http import routes
from animegan_api.http.middleware import (
    DOCS_ASSETS,
    GuardMiddleware,
    ResponseHeadersMiddleware,
    UploadLimitMiddleware,
)
from animegan_api.http.observability import ObservabilityMiddleware
from animegan_api.http.openapi import install_openapi
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.plans import FACE_HEADER_NAMES
from animegan_api.serving.services import Services

__all__ = ["create_app", "services_of"]

log = logging.getLogger(__name__)

# The forward thread needs the GIL between every torch op; with Python's default 5 ms switch interval it
# could wait that long behind the event loop or a video job's decoding and encoding threads (a video job
# measured 10-20% slower than the same forwards in one thread; at 0.2 ms, 5-9%). See docs/performance.md.
_GIL_SWITCH_S = 0.0002

# Multipart framing and the small form fields ride on top of the file itself.
_FORM_OVERHEAD_BYTES = 64 * 1024

_DESCRIPTION = """
Turns photos into anime-style pictures with AnimeGAN generators.

Post a photo to `POST /v1/transform`; list styles with `GET /v1/styles`.
Every error has the body `{"error": {"code": "...", "message": "..."}}`;
request validation (`422 invalid_request`) adds `fields`, naming each field and what is wrong.

**Model licence:** the AnimeGAN weights (by TachibanaYoshino) are licensed for
non-commercial use only (research, teaching, demos); commercial use needs the
author's written permission.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; models load when the lifespan starts."""
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPIOffline(  # /docs and /redoc from the assets in fastapi-offline's wheel, not a CDN
        title="animegan-api",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=_lifespan(settings, metrics),
        static_url=DOCS_ASSETS,
    )
    # Added innermost first, so requests meet: observability > headers > CORS > upload cap > guard > routes.
    app.add_middleware(
        GuardMiddleware,
        keys=settings.key_set() | _admin_keys(settings),
        limiter=Limiter(key_func=get_remote_address, enabled=settings.rate_limit_enabled),
        rate_limit=settings.rate_limit,
        trust_forwarded_for=settings.trust_forwarded_for,
    )
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=settings.max_upload_bytes + _FORM_OVERHEAD_BYTES,
        chunk_timeout_s=settings.body_timeout_s,
        job_max_bytes=settings.job_max_upload_bytes + _FORM_OVERHEAD_BYTES,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=[
                "Server-Timing",
                "X-Cache",
                "X-Style",
                "X-Styles",
                "X-Request-ID",
                "Retry-After",
                "Location",
                *FACE_HEADER_NAMES,
            ],
        )
    app.add_middleware(ResponseHeadersMiddleware)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    routes.install(app)
    install_openapi(app, settings.default_style)
    return app


def _admin_keys(settings: Settings) -> frozenset[str]:
    """The admin key passes the guard too (it sees every job), where API keys are on."""
    if settings.admin_key is None or not settings.key_set():
        return frozenset()
    return frozenset({settings.admin_key.get_secret_value()})


def services_of(app: FastAPI) -> Services | None:
    """The running app's services; None before the lifespan has started them."""
    services: Services | None = getattr(app.state, "services", None)
    return services


def _configure_torch(threads: int, interop_threads: int) -> None:
    """Fix torch's thread pools once, so W workers x T threads never oversubscribe the cores."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(interop_threads)
    except RuntimeError:  # allowed only once per process, before any parallel work
        if torch.get_num_interop_threads() != interop_threads:
            log.warning("interop threads already fixed at %d", torch.get_num_interop_threads())


def _lifespan(settings: Settings, metrics: Metrics) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _configure_torch(settings.threads, settings.interop_threads)
        sys.setswitchinterval(_GIL_SWITCH_S)
        Image.MAX_IMAGE_PIXELS = settings.max_pixels  # Pillow's own bomb guard agrees with ours
        services = await Services.start(settings, metrics)
        app.state.services = services
        hangup = _watch_sighup(services)
        log.info(
            "ready: styles=%s workers=%d threads=%d max_queue=%d backend=%s",
            services.registry.names,
            settings.workers,
            settings.threads,
            settings.max_queue,
            settings.backend,
        )
        try:
            yield
        finally:
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await services.close()

    return lifespan


def _watch_sighup(services: Services) -> bool:
    """SIGHUP rescans the weights folder, where the platform lets this loop own the signal."""
    background: set[asyncio.Task[object]] = set()

    def reload() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(services.reload())
        background.add(task)
        task.add_done_callback(background.discard)
        task.add_done_callback(_log_reload_failure)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True


def _log_reload_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.error("reload failed: %s", failure)
