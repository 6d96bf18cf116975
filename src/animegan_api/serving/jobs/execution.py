"""The jobs this replica runs: taken from the queue, run through the shared engine, stopped when asked.

A run starts only if the record can be marked running over the version read,
so a cancel from another replica and a start never both win. A job that was
already running when handed over was cut short (its replica died, or the
process restarted) and starts again from the beginning; after
``job_max_attempts`` starts it fails as ``job_interrupted`` instead of taking
every replica down in turn. While it runs, its progress is saved every half
second; a save refused because the record changed means a cancel was written
(stop within a frame) or another replica took the job over (stop, write
nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from animegan_api.config import Settings
from animegan_api.failures import Refusal
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.registry import StyleRegistry
from animegan_api.serving.admission import ImagePool
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.jobs.gate import JobGate, Stopped
from animegan_api.serving.jobs.ledger import Ledger
from animegan_api.serving.jobs.records import Job
from animegan_api.serving.jobs.work import Work, run_job
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.runner import Runner

__all__ = ["JobExecutor"]

log = logging.getLogger("animegan_api.jobs")
_PROGRESS_EVERY_S = 0.5


class JobExecutor:
    """Runs the jobs the queue hands this replica, beside interactive requests, on the one engine."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        engine: InferenceEngine,
        images: ImagePool,
        runner: Runner,
        registry: Callable[[], StyleRegistry],
        metrics: Metrics,
    ) -> None:
        self.settings, self.ledger, self.engine, self.images = settings, ledger, engine, images
        self.runner, self._registry, self.metrics = runner, registry, metrics
        self._stops: dict[str, str] = {}  # running job id -> why it must stop ("canceled", "shutdown", "lost")
        self._closing = False

    def stop(self, job_id: str, why: str) -> None:
        """Ask a job running here to stop within a frame or picture (nothing if it runs elsewhere)."""
        if job_id in self._stops:
            self._stops[job_id] = why

    def stop_all(self) -> None:
        """A shutdown: every job here stops and goes back in the queue; nothing new starts."""
        self._closing = True
        for job_id in list(self._stops):
            self._stops[job_id] = "shutdown"

    async def execute(self, job_id: str) -> bool:
        """Run a job the queue handed over; False when a shutdown stopped it and it must run again."""
        if self._closing:
            return False
        job = await self.ledger.store.get(job_id)
        while job is not None and not job.final:
            if job.cancel_requested or job.attempts >= self.settings.job_max_attempts:
                job.status, job.finished_at = "canceled" if job.cancel_requested else "failed", time.time()
                if job.status == "failed":
                    job.error = {"code": "job_interrupted", "message": f"cut short {job.attempts} times"}
                self.ledger.close_record(job)
            else:
                job.status, job.attempts, job.started_at = "running", job.attempts + 1, time.time()
                job.done, job.items, job.error = 0, [], None
            if await self.ledger.save(job):
                if job.status == "running":
                    return await self._run(job)
                self.ledger.log(job, job.status)
                return True
            job = await self.ledger.store.get(job_id)  # another replica wrote it first (a cancel): decide again
        return True

    async def _run(self, job: Job) -> bool:
        self._stops[job.id] = ""
        gate = JobGate(self.engine, self.images, lambda: self._stops.get(job.id) or None)
        saving: list[asyncio.Task[None]] = []
        last, counted = [0.0], [0]

        def progress() -> None:
            self.metrics.job_units.labels(job.kind).inc(job.done - counted[0])
            counted[0] = job.done
            if (now := time.monotonic()) - last[0] >= _PROGRESS_EVERY_S and all(task.done() for task in saving):
                last[0] = now
                saving[:] = [asyncio.create_task(self._progress(job))]

        self.ledger.log(job, "running")
        started = time.perf_counter()
        files = self.ledger.files
        try:
            style = await self._style(job.style)
            folder = await files.workspace(job.id)
            work = Work(job, folder, style, gate, self.runner, progress, self.settings.inference_nice)
            job.result_name, job.content_type = await run_job(work)
            job.result_bytes = (folder / job.result_name).stat().st_size
            if self._stops.get(job.id) != "lost":  # a replica that lost the job leaves its result to the new one's
                await files.keep_result(job.id, job.result_name)
            job.status = "succeeded"
        except Stopped as stop:
            job.status = "canceled" if str(stop) == "canceled" else "queued"
        except asyncio.CancelledError:  # the service is shutting down: the job runs again, here or elsewhere
            job.status = "queued"
        except Refusal as exc:
            job.status, job.error = "failed", {"code": exc.code, "message": exc.message}
        except Exception as exc:  # a bug must fail one job, never the worker
            log.exception("job %s failed", job.id)
            job.status, job.error = "failed", {"code": "internal_error", "message": type(exc).__name__}
        finally:
            gate.release()
            await asyncio.gather(*saving, return_exceptions=True)
            await files.release(job.id)
        if self._stops.pop(job.id, None) == "lost":
            return True  # another replica runs it now: its record is theirs
        return await self._settle(job, time.perf_counter() - started)

    async def _progress(self, job: Job) -> None:
        """Save progress; a refused save means a cancel was written or the job was taken over."""
        try:
            if await self.ledger.save_progress(job):
                return
            fresh = await self.ledger.store.get(job.id)
        except Refusal:  # the store out of reach for a moment: the next save tries again
            return
        if fresh is None or fresh.attempts != job.attempts:
            self.stop(job.id, "lost")
        elif fresh.cancel_requested:
            self.stop(job.id, "canceled")
            job.version, job.cancel_requested = fresh.version, True  # still ours: the outcome goes over it

    async def _settle(self, job: Job, seconds: float) -> bool:
        if job.status == "queued":
            job.started_at, job.done, job.items = None, 0, []
            job.attempts -= 1  # a shutdown is not the job's fault
        else:
            job.finished_at = time.time()
            self.ledger.close_record(job)
            self.metrics.job_duration.labels(job.kind, job.status).observe(seconds)
        for _ in range(8):  # a cancel written since the last progress save: the outcome goes over it
            if await self.ledger.save(job):
                self.ledger.log(job, "requeued" if job.status == "queued" else job.status)
                break
            fresh = await self.ledger.store.get(job.id)
            if fresh is None or fresh.attempts != job.attempts:
                break  # deleted, or another replica's now
            job.version, job.cancel_requested = fresh.version, fresh.cancel_requested
        return job.status != "queued"

    async def _style(self, name: str) -> LoadedStyle:
        registry = self._registry()
        entry = registry.lookup(name)
        if entry is None or entry.error:
            raise Refusal("style_unavailable", f"style {name!r} is no longer available")
        return await registry.acquire(entry)
