"""Application factory and lifespan.

Nothing happens at import time: ``create_app`` wires middleware and routes,
and the lifespan loads and warms the models, fixes torch's thread counts and
creates the inference pool, all of which live on ``app.state`` and are torn
down on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from PIL import Image
from fastapi.middleware.cors import CORSMiddleware
from slowapi import Limiter
from slowapi.util import get_remote_address

from . import __version__, api, imaging
from .cache import ResultCache
from .config import Settings
from .engine import InferenceEngine
from .metrics import Metrics, ObservabilityMiddleware
from .middleware import GuardMiddleware, ResponseHeadersMiddleware, UploadLimitMiddleware
from .styles import StyleRegistry, build_registry

log = logging.getLogger(__name__)

# Multipart framing and the small form fields ride on top of the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024

DESCRIPTION = """
Turns photos into anime-style pictures with AnimeGAN generators.

Post a photo to `POST /v1/transform`; list styles with `GET /v1/styles`.
Every error has the body `{"error": {"code": "...", "message": "..."}}`
(422 validation errors keep FastAPI's `detail` list).

**Model licence:** the AnimeGAN weights (by TachibanaYoshino) are licensed for
non-commercial use only (research, teaching, demos); commercial use needs the
author's written permission.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; models load when the lifespan starts."""
    settings = settings or Settings()
    app = FastAPI(
        title="animegan-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.registry = StyleRegistry()
    app.state.reload_styles = lambda: reload_styles(app)
    app.state.limiter = _limiter(settings)
    app.state.draining = False
    # Added innermost first, so requests meet: headers > CORS > upload cap > guard (keys, rate, capacity) > routes.
    app.add_middleware(
        GuardMiddleware,
        keys=settings.key_set(),
        limiter=app.state.limiter,
        rate_limit=settings.rate_limit,
        trust_forwarded_for=settings.trust_forwarded_for,
    )
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        chunk_timeout_s=settings.body_timeout_s,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["Server-Timing", "X-Cache", "X-Style", "X-Styles", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(ResponseHeadersMiddleware)
    app.state.metrics = Metrics()
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics)
    api.install(app)
    return app


def configure_torch(threads: int, interop_threads: int) -> None:
    """Fix torch's thread pools once, so W workers x T threads never oversubscribe the cores."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(interop_threads)
    except RuntimeError:  # allowed only once per process, before any parallel work
        if torch.get_num_interop_threads() != interop_threads:
            log.warning("interop threads already fixed at %d", torch.get_num_interop_threads())


def _limiter(settings: Settings) -> Limiter:
    return Limiter(key_func=get_remote_address, enabled=settings.rate_limit_enabled)


def _build_registry(app: FastAPI) -> StyleRegistry:
    settings: Settings = app.state.settings
    return build_registry(
        settings.weights_dir,
        backend=settings.backend,
        default_style=settings.default_style,
        threads=settings.threads,
        warmup_side=settings.warmup_side,
        lazy=settings.load_mode == "lazy",
        max_loaded=settings.max_loaded_models,
        precision=settings.precision,
        check_batches=_check_batches(settings.precision_check_dir) if settings.precision == "bf16" else None,
        on_load=lambda name, seconds: app.state.metrics.model_load.labels(name).set(seconds),
    )


def _check_batches(folder: Path | None, count: int = 4, side: int = 256) -> list[np.ndarray] | None:
    """Up to ``count`` photos from ``folder`` as model inputs, for the bf16 quality check."""
    if folder is None:
        return None
    batches = []
    for path in sorted(p for p in folder.iterdir() if p.is_file())[: count * 4]:
        try:
            prepared = imaging.prepare(path.read_bytes(), max_pixels=100_000_000, max_side=side, multiple=32)
        except imaging.ImageError:
            continue
        batches.append(imaging.to_batch(prepared.rgb))
        if len(batches) == count:
            break
    if not batches:
        raise ValueError(f"precision_check_dir {folder} holds no readable picture")
    return batches


async def reload_styles(app: FastAPI) -> StyleRegistry:
    """Rescan the weights folder and swap the registry in one assignment.

    Requests already running keep the model they resolved; new ones see the
    new registry. Overlapping reloads queue behind one another.
    """
    async with app.state.reload_lock:
        registry = await asyncio.to_thread(_build_registry, app)
        app.state.registry = registry
        app.state.ready = registry.ready
        app.state.cache.clear()
    log.info("styles reloaded: %s", registry.names)
    return registry


def _on_sighup(app: FastAPI) -> None:
    task = asyncio.ensure_future(reload_styles(app))
    task.add_done_callback(lambda t: t.cancelled() or not t.exception() or log.error("reload failed: %s", t.exception()))
    app.state.background.add(task)
    task.add_done_callback(app.state.background.discard)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_torch(settings.threads, settings.interop_threads)
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # Pillow's own bomb guard agrees with ours
    registry = await asyncio.to_thread(_build_registry, app)
    if not registry.ready:
        log.error("no usable model in %s; /readyz stays 503", settings.weights_dir.resolve())
    engine = InferenceEngine(
        settings.workers, settings.max_queue, settings.request_timeout_s, settings.image_threads,
        max_batch=settings.max_batch, max_batch_wait_ms=settings.max_batch_wait_ms,
        inference_nice=settings.inference_nice,
    )
    app.state.registry, app.state.engine = registry, engine
    app.state.cache = ResultCache(settings.cache_max_bytes)
    app.state.metrics.watch_engine(engine, app.state.cache)
    app.state.reload_lock, app.state.background = asyncio.Lock(), set()
    app.state.ready = registry.ready
    hangup = _watch_sighup(app)
    log.info(
        "ready: styles=%s workers=%d threads=%d max_queue=%d backend=%s",
        registry.names, settings.workers, settings.threads, settings.max_queue, settings.backend,
    )
    try:
        yield
    finally:
        app.state.ready = False
        if hangup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        engine.shutdown()


def _watch_sighup(app: FastAPI) -> bool:
    """SIGHUP rescans the weights folder, where the platform lets this loop own the signal."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _on_sighup, app)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
