"""The app's services as one typed object: created in the lifespan, torn down on shutdown.

Routes and middleware reach everything through it (``app.state.services``),
so there is one place that says what a running service holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from animegan_api.config import Settings
from animegan_api.pictures.faces import FaceDetector
from animegan_api.runtime.memory import MiB, container_limit, default_budget, fix_mmap_threshold
from animegan_api.runtime.precision import check_batches
from animegan_api.runtime.registry import StyleRegistry, build_registry
from animegan_api.serving.admission import Admission, ImagePool
from animegan_api.serving.budget import Budget
from animegan_api.serving.cache import ResultCache
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.fitting import fit_openvino, settle_baseline
from animegan_api.serving.jobs.backends import open_backend, open_files
from animegan_api.serving.jobs.execution import JobExecutor
from animegan_api.serving.jobs.ledger import Ledger
from animegan_api.serving.jobs.manager import JobManager
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.runner import Runner
from animegan_api.serving.tickets import Ticket

__all__ = ["Services"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    registry: StyleRegistry
    engine: InferenceEngine
    images: ImagePool
    cache: ResultCache
    runner: Runner
    jobs: JobManager
    draining: bool = False
    closed: bool = False
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _resources: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> Services:
        """Load and warm the models (off the event loop), then build the engine, pools and cache around them."""
        fix_mmap_threshold()  # before anything is measured: the memory counts hold only with it
        registry = await asyncio.to_thread(_load_registry, settings, metrics)
        detector = await asyncio.to_thread(FaceDetector, settings.face_detect_side)
        if not registry.ready:
            log.error("no usable model in %s; /readyz stays 503", settings.weights_dir.resolve())
        budget = await asyncio.to_thread(_budget, settings, registry)
        engine = InferenceEngine(
            settings.workers,
            settings.max_queue,
            settings.request_timeout_s,
            max_batch=settings.max_batch,
            max_batch_wait_ms=settings.max_batch_wait_ms,
            inference_nice=settings.inference_nice,
            budget=budget,
        )
        images = ImagePool(settings.image_threads)
        cache = ResultCache(settings.cache_max_bytes)
        metrics.watch_engine(engine, cache)
        runner = Runner(detector, settings.max_pixels, settings.avatar_max_faces, cache, metrics)
        resources = AsyncExitStack()
        store, queue, signals = await open_backend(settings, resources)
        ledger = Ledger(store, signals, await open_files(settings), settings.job_ttl_s)
        services: Services
        executor = JobExecutor(settings, ledger, engine, images, runner, lambda: services.registry, metrics)
        jobs = JobManager(settings, ledger, queue, executor, metrics)
        services = cls(settings, metrics, registry, engine, images, cache, runner, jobs, _resources=resources)
        await jobs.start()
        return services

    def admission(self, ticket: Ticket, client_gone: Callable[[], Awaitable[object]]) -> Admission:
        """The gate an admitted request's plan runs through."""
        return Admission(self.engine, self.images, self.metrics, ticket, client_gone)

    @property
    def ready(self) -> bool:
        return not self.closed and self.registry.ready

    async def reload(self) -> StyleRegistry:
        """Rescan the weights folder and swap the registry in one assignment.

        Requests already running keep the model they resolved; new ones see the
        new registry. Overlapping reloads queue behind one another.
        """
        async with self._reload_lock:
            self.registry = await asyncio.to_thread(_load_registry, self.settings, self.metrics)
            self.cache.clear()
            if (budget := self.engine.budget) is not None:  # the old models go once no running request holds them
                await asyncio.to_thread(_fit, self.registry, budget, self.settings)
        log.info("styles reloaded: %s", self.registry.names)
        return self.registry

    async def close(self) -> None:
        """Jobs stop and go back in the queue, then the threads end."""
        self.closed = True
        await self.jobs.close()
        await self._resources.aclose()
        self.engine.shutdown()
        self.images.shutdown()


def _budget(settings: Settings, registry: StyleRegistry) -> Budget | None:
    """The memory budget over its baseline, or None when it is off.

    The baseline is what is resident now (the loaded models) plus what the
    result cache may come to hold: both stay, whatever requests come.
    """
    if settings.memory_budget_mb == 0:
        return None
    total = settings.memory_budget_mb * MiB if settings.memory_budget_mb else default_budget(container_limit())
    budget = Budget(total, 0)
    _fit(registry, budget, settings)
    log.info("memory budget %d MiB, %d MiB resident with the models loaded", total // MiB, budget.baseline // MiB)
    return budget


def _fit(registry: StyleRegistry, budget: Budget, settings: Settings) -> None:
    """The baseline with the registry's models loaded, after moving styles off OpenVINO where the budget needs it."""
    settle_baseline(budget, settings.cache_max_bytes)
    fit_openvino(registry, budget, settings.max_side_limit, settings.cache_max_bytes)


def _load_registry(settings: Settings, metrics: Metrics) -> StyleRegistry:
    return build_registry(
        settings.weights_dir,
        backend=settings.backend,
        default_style=settings.default_style,
        threads=settings.threads,
        warmup_side=settings.warmup_side,
        lazy=settings.load_mode == "lazy",
        max_loaded=settings.max_loaded_models,
        precision=settings.precision,
        check_batches=check_batches(settings.precision_check_dir) if settings.precision != "fp32" else None,
        measure_memory=settings.memory_budget_mb != 0,
        on_load=metrics.style_loaded,
        onnx_runtime=settings.onnx_runtime,
        torch_runtime=settings.torch_runtime,
        streams=settings.workers,
        memory_profiles=settings.memory_profile_dir,
        nice=settings.inference_nice,
    )
