"""Jobs: submitted, queued, run a few at a time beside interactive requests, watched, collected and swept.

The manager owns the job folder and the workers; the records live in a
:class:`~animegan_api.serving.jobs.store.JobStore`. A restart loses nothing:
jobs found running are queued again (they start over), queued ones stay
queued, finished results are served until they expire. On shutdown a running
job stops within one frame or picture and goes back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from animegan_api.config import Settings
from animegan_api.failures import Refusal
from animegan_api.runtime.memory import MiB
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.registry import StyleRegistry
from animegan_api.serving.admission import ImagePool
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.jobs.gate import JobGate, Stopped
from animegan_api.serving.jobs.intake import Intake, unit_need
from animegan_api.serving.jobs.records import Job, new_id
from animegan_api.serving.jobs.store import JobStore
from animegan_api.serving.jobs.work import Work, run_job
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.runner import Runner

__all__ = ["JobManager"]

log = logging.getLogger("animegan_api.jobs")
_PROGRESS_EVERY_S = 0.5


class JobManager:
    """Every job of this service: the API's operations on them and the workers that run them."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        engine: InferenceEngine,
        images: ImagePool,
        runner: Runner,
        registry: Callable[[], StyleRegistry],
        metrics: Metrics,
    ) -> None:
        self.settings, self.store, self.engine, self.images = settings, store, engine, images
        self.runner, self._registry, self.metrics = runner, registry, metrics
        self.folder = settings.job_dir / "files"
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._stops: dict[str, str] = {}  # running job id -> why it must stop ("canceled", "shutdown")
        self._ended: dict[str, asyncio.Event] = {}  # running job id -> set when it has stopped
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        """Queue again what a previous run left running, then start the workers and the sweeper."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for job in self.store.requeue_running():
            log.info("job %s queued again after a restart", job.id, extra={"fields": _fields(job)})
        self.metrics.watch_jobs(self.store)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.settings.job_workers)]
        self._tasks.append(asyncio.create_task(self._sweeper()))
        self._wake.set()

    async def close(self) -> None:
        """Stop running jobs within a frame and queue them again; the workers end."""
        self._closing = True
        for job_id in list(self._stops):
            self._stops[job_id] = "shutdown"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()

    def submit(
        self, upload: Path, intake: Intake, style: str, options: dict[str, Any], **fields: Any
    ) -> tuple[Job, bool]:
        """A new queued job whose input is ``upload`` (moved into its folder), and True; or the job its
        idempotency key already made, and False."""
        used = self.store.reserved_bytes()
        need = upload.stat().st_size + intake.output_bytes
        limit = self.settings.job_disk_mb * 1024 * 1024
        if used + need > limit:
            message = f"the job's files would take about {need >> 20} MiB and {max(0, limit - used) >> 20} MiB are free"
            raise Refusal("insufficient_storage", message, {"Retry-After": "60"})
        job = Job(new_id(), intake.kind, style, options, total=intake.total, created_at=time.time(), **fields)
        job.reserved_bytes = need
        folder = self.folder / job.id
        folder.mkdir(parents=True)
        shutil.move(upload, folder / "input")
        stored = self.store.add(job)
        if stored is not job:  # the same idempotency key, submitted meanwhile: that job stands
            shutil.rmtree(folder, ignore_errors=True)
            return stored, False
        self._transition(job, "submitted")
        self._wake.set()
        return job, True

    def admit(self, style: LoadedStyle, intake: Intake) -> float:
        """Refuse a job whose frame or picture could never fit the memory budget; its model seconds per unit.

        The speed is the engine's learned one (seeded from the style's warm-up), as requests are priced.
        """
        budget, need = self.engine.budget, unit_need(style, intake.unit_size)
        if budget is not None and not budget.fits(need.nbytes):
            unit = "frame" if intake.kind == "video" else "picture"
            message = (
                f"one {unit} needs {need.nbytes / MiB:.0f} MiB, more than the {budget.capacity / MiB:.0f} MiB one "
                f"piece of work may have; the largest max_side that fits is {need.largest_side(budget.capacity)}"
            )
            raise Refusal("too_large_for_memory", message)
        if style.warm_timing:
            self.engine.speed.seed(style.predictor, *style.warm_timing)
        width, height = intake.unit_size
        return self.engine.speed.expected_s(style.predictor, 3 * width * height)

    def get(self, job_id: str, owner: str | None, admin: bool = False) -> Job | None:
        """The job, if it exists and the caller may see it."""
        job = self.store.get(job_id)
        if job is None or not (admin or owner is None or job.owner == owner):
            return None
        return job

    def document(self, job: Job) -> dict[str, Any]:
        """The job's document with its place in the queue and the time left, from the model's learned speed."""
        position, eta = None, None
        if job.status == "queued":
            queued = self.store.queued()
            ahead = [other for other in queued if (other.created_at, other.id) < (job.created_at, job.id)]
            position = len(ahead) + 1
            running = sum(self._left_s(other) for other in self.store.running())
            workers = max(1, self.settings.job_workers)
            eta = (running + sum(self._left_s(other) for other in ahead)) / workers + self._left_s(job)
        elif job.status == "running":
            eta = self._left_s(job)
        return job.document(position, eta)

    async def cancel(self, job: Job) -> Job | None:
        """Cancel a queued job at once, a running one within a frame (returned once stopped); None: deleted.

        A finished job is deleted with its result.
        """
        if job.status == "queued":
            job.status, job.finished_at = "canceled", time.time()
            self._finish_files(job, keep_result=False)
            self._transition(job, "canceled")
            return job
        if job.status == "running" and job.id in self._stops:
            self._stops[job.id] = "canceled"
            await self._ended.setdefault(job.id, asyncio.Event()).wait()
            return self.store.get(job.id)
        self._remove(job)
        return None

    async def changes(self, job_id: str, after: int) -> AsyncIterator[Job | None]:
        """The job each time it changes past version ``after``; None every 15 s of quiet (a keep-alive)."""
        while True:
            event = self._changed.setdefault(job_id, asyncio.Event())
            job = self.store.get(job_id)
            if job is None:
                return
            if job.version > after:
                after = job.version
                yield job
                if job.final:
                    return
                continue
            try:
                await asyncio.wait_for(event.wait(), 15)
            except TimeoutError:
                yield None

    def sweep(self, now: float | None = None) -> int:
        """Delete the jobs whose results have expired; returns how many."""
        expired = self.store.expired(time.time() if now is None else now)
        for job in expired:
            self._remove(job)
        return len(expired)

    async def _worker(self) -> None:
        while not self._closing:
            job = self.store.claim()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._run(job)

    async def _run(self, job: Job) -> None:
        job.started_at, job.done, job.items, job.error = time.time(), 0, [], None
        self._stops[job.id] = ""
        self._ended[job.id] = asyncio.Event()
        gate = JobGate(self.engine, self.images, lambda: self._stops.get(job.id) or None)
        last, counted = [0.0], [0]

        def progress() -> None:
            self.metrics.job_units.labels(job.kind).inc(job.done - counted[0])
            counted[0] = job.done
            if (now := time.monotonic()) - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self._save(job)

        self._transition(job, "running")
        started = time.perf_counter()
        try:
            style = await self._style(job.style)
            work = Work(job, self.folder / job.id, style, gate, self.runner, progress, self.settings.inference_nice)
            job.result_name, job.content_type = await run_job(work)
            job.status = "succeeded"
        except Stopped as stop:
            job.status = "canceled" if str(stop) == "canceled" else "queued"
        except asyncio.CancelledError:  # the service is shutting down: the job runs again after the restart
            job.status = "queued"
        except Refusal as exc:
            job.status, job.error = "failed", {"code": exc.code, "message": exc.message}
        except Exception as exc:  # a bug must fail one job, never the worker
            log.exception("job %s failed", job.id)
            job.status, job.error = "failed", {"code": "internal_error", "message": type(exc).__name__}
        finally:
            gate.release()
            self._stops.pop(job.id, None)
        self._settle(job, time.perf_counter() - started)
        self._ended.pop(job.id).set()

    def _settle(self, job: Job, seconds: float) -> None:
        if job.status == "queued":
            job.started_at, job.done, job.items = None, 0, []
            self._transition(job, "requeued")
            return
        job.finished_at = time.time()
        self._finish_files(job, keep_result=job.status == "succeeded")
        self.metrics.job_duration.labels(job.kind, job.status).observe(seconds)
        self._transition(job, job.status)

    async def _style(self, name: str) -> LoadedStyle:
        registry = self._registry()
        entry = registry.lookup(name)
        if entry is None or entry.error:
            raise Refusal("style_unavailable", f"style {name!r} is no longer available")
        return await registry.acquire(entry)

    def _finish_files(self, job: Job, keep_result: bool) -> None:
        """A finished job keeps only its result, counted at its real size, until it expires."""
        folder = self.folder / job.id
        for path in folder.glob("*"):
            if not (keep_result and path.name == job.result_name):
                path.unlink(missing_ok=True)
        result = folder / job.result_name if keep_result and job.result_name else None
        job.result_bytes = result.stat().st_size if result else None
        job.reserved_bytes = job.result_bytes or 0
        job.expires_at = job.finished_at + self.settings.job_ttl_s if job.finished_at else None

    def _remove(self, job: Job) -> None:
        shutil.rmtree(self.folder / job.id, ignore_errors=True)
        self.store.delete(job.id)
        self._notify(job.id)
        log.info("job %s deleted", job.id, extra={"fields": {**_fields(job), "event": "deleted"}})

    def _left_s(self, job: Job) -> float:
        """Model seconds the job still needs: its own measured pace once running, else the learned speed."""
        left = max(0, job.total - job.done)
        if job.status == "running" and job.done and job.started_at:
            return left * (time.time() - job.started_at) / job.done
        return left * job.seconds_per_unit

    def _save(self, job: Job) -> None:
        self.store.save(job)
        self._notify(job.id)

    def _notify(self, job_id: str) -> None:
        if (event := self._changed.pop(job_id, None)) is not None:
            event.set()

    def _transition(self, job: Job, event: str) -> None:
        if event != "submitted":
            self._save(job)
        else:
            self._notify(job.id)
        log.info("job %s %s", job.id, event, extra={"fields": {**_fields(job), "event": event}})

    async def _sweeper(self) -> None:
        interval = min(60.0, self.settings.job_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:  # a sweep that fails is tried again, never stops the service
                log.exception("job sweep failed")


def _fields(job: Job) -> dict[str, Any]:
    error = job.error["code"] if job.error else None
    return {"job": job.id, "kind": job.kind, "status": job.status, "style": job.style, "done": job.done, "error": error}
