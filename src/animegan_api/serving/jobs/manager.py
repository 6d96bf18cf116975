"""Jobs: submitted, queued, run a few at a time beside interactive requests, watched, collected and swept.

The manager answers the API's operations on jobs; records live in a
:class:`~animegan_api.serving.jobs.store.JobStore`, the order in a
:class:`~animegan_api.serving.jobs.queues.JobQueue`, this replica's runs in a
:class:`~animegan_api.serving.jobs.execution.JobExecutor`, and replicas tell one
another of changes and cancels through :class:`~animegan_api.serving.jobs.signals.JobSignals`.
Embedded (SQLite, one replica) or shared (Redis, every replica), the rules are
the same, and nothing is lost on a restart or a crash: a job cut short runs
again from the start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from animegan_api.config import Settings
from animegan_api.failures import Refusal
from animegan_api.serving.jobs.execution import JobExecutor
from animegan_api.serving.jobs.intake import Intake
from animegan_api.serving.jobs.ledger import Ledger
from animegan_api.serving.jobs.queues import JobQueue
from animegan_api.serving.jobs.records import Job, new_id
from animegan_api.serving.jobs.signals import Signal
from animegan_api.serving.metrics import Metrics

__all__ = ["JobManager"]

log = logging.getLogger("animegan_api.jobs")
_CANCEL_WAIT_S = 30.0
_CENSUS_S = 5.0
_RACES = 8  # writes lost to another replica in a row before an operation gives the record as it is


class JobManager:
    """Every job of this service: the API's operations on them, and the runs this replica takes."""

    def __init__(
        self, settings: Settings, ledger: Ledger, queue: JobQueue, executor: JobExecutor, metrics: Metrics
    ) -> None:
        self.settings, self.ledger, self.queue, self.executor, self.metrics = settings, ledger, queue, executor, metrics
        self.store, self.files = ledger.store, ledger.files
        self._changed: dict[str, asyncio.Event] = {}
        self._sweeper_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for notices, take jobs from the queue, and sweep expired ones."""
        await self.files.start()
        self.ledger.signals.listen(self._on_signal)
        self.metrics.watch_jobs(lambda: self.ledger.census)
        try:
            self.ledger.census = await self.store.counts()
        except Refusal as exc:  # a shared store away at start: jobs answer 503 until it is back
            log.warning("job store unreachable at start: %s", exc.message)
        await self.queue.start(self.executor.execute)
        self._sweeper_task = asyncio.create_task(self._sweeper())

    async def close(self) -> None:
        """Running jobs stop within a frame and go back in the queue; then the queue, notices and transfers end."""
        self.executor.stop_all()
        await self.queue.close()
        await self.files.close()
        if self._sweeper_task is not None:
            self._sweeper_task.cancel()
            await asyncio.gather(self._sweeper_task, return_exceptions=True)
        await self.ledger.signals.close()
        await self.store.close()

    async def submit(
        self, upload: Path, intake: Intake, style: str, options: dict[str, Any], **fields: Any
    ) -> tuple[Job, bool]:
        """A new queued job whose input is ``upload`` (moved into the job store), and True; or the job its
        idempotency key already made, and False."""
        used = await self.store.reserved_bytes()
        need = upload.stat().st_size + intake.output_bytes
        limit = self.settings.job_disk_mb * 1024 * 1024
        if used + need > limit:
            message = f"the job's files would take about {need >> 20} MiB and {max(0, limit - used) >> 20} MiB are free"
            raise Refusal("insufficient_storage", message, {"Retry-After": "60"})
        job = Job(new_id(), intake.kind, style, options, total=intake.total, created_at=time.time(), **fields)
        job.reserved_bytes = need
        await self.files.keep_input(job.id, upload)
        try:
            stored = await self.store.add(job)
            if stored is job:
                await self.queue.enqueue(job.id)
        except Refusal:
            await self._forget(job)
            raise
        if stored is not job:  # the same idempotency key, submitted meanwhile: that job stands
            await self.files.remove(job.id)
            return stored, False
        await self.ledger.announce(job)
        self.ledger.log(job, "submitted")
        return job, True

    async def get(self, job_id: str, owner: str | None, admin: bool = False) -> Job | None:
        """The job, if it exists and the caller may see it."""
        job = await self.store.get(job_id)
        if job is None or not (admin or owner is None or job.owner == owner):
            return None
        return job

    async def document(self, job: Job) -> dict[str, Any]:
        """The job's document with its place in the queue and the time left, from the model's learned speed."""
        return (await self.documents([job]))[0]

    async def documents(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """The jobs' documents; the queue is read once for all of them (a page of a list), and only if one waits."""
        queued: list[Job] = []
        running_s = 0.0
        if any(job.status == "queued" for job in jobs):
            queued = await self.store.queued()
            running_s = sum(_left_s(other) for other in await self.store.running())
        workers = max(1, self.settings.job_workers)
        documents = []
        for job in jobs:
            position, eta = None, None
            if job.status == "queued":
                ahead = [other for other in queued if (other.created_at, other.id) < (job.created_at, job.id)]
                position = len(ahead) + 1
                eta = (running_s + sum(_left_s(other) for other in ahead)) / workers + _left_s(job)
            elif job.status == "running":
                eta = _left_s(job)
            documents.append(job.document(position, eta))
        return documents

    async def cancel(self, job: Job) -> Job | None:
        """Cancel a queued job at once, a running one within a frame wherever it runs (returned once
        stopped); delete a finished one with its result (None)."""
        for _ in range(_RACES):  # each lost race re-reads the record: another replica wrote it meanwhile
            if job.final:
                await self.ledger.remove(job)
                return None
            if job.status == "queued":
                job.status, job.finished_at = "canceled", time.time()
                self.ledger.close_record(job)
                if await self.ledger.save(job):
                    self.ledger.log(job, "canceled")
                    return job
            else:
                job.cancel_requested = True
                if await self.ledger.save(job):
                    await self.ledger.signals.publish("cancel", job.id)
                    return await self._ended(job)
            fresh = await self.store.get(job.id)
            if fresh is None:
                return None
            job = fresh
        return job

    async def changes(self, job_id: str, after: int) -> AsyncIterator[Job | None]:
        """The job each time it changes past version ``after``; None every 15 s of quiet (a keep-alive).

        A shared store out of reach keeps the stream open on keep-alives, read again every few seconds.
        """
        while True:
            event = self._changed.setdefault(job_id, asyncio.Event())
            try:
                job = await self.store.get(job_id)
            except Refusal:
                yield None
                await asyncio.sleep(_CENSUS_S)
                continue
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

    async def sweep(self, now: float | None = None) -> int:
        """Delete the jobs whose results have expired; returns how many."""
        expired = await self.store.expired(time.time() if now is None else now)
        for job in expired:
            await self.ledger.remove(job)
        return len(expired)

    async def _ended(self, job: Job) -> Job:
        """The job once it has ended, or as it stands after ``_CANCEL_WAIT_S`` (its replica may be gone:
        the cancel is in its record, and the replica that takes it over ends it)."""
        latest = job
        try:
            async with asyncio.timeout(_CANCEL_WAIT_S):
                async for changed in self.changes(job.id, job.version):
                    latest = changed or latest
        except TimeoutError:
            pass
        return latest

    async def _forget(self, job: Job) -> None:
        """A job whose enqueue failed is not kept: the client was told 503 and will submit again."""
        try:
            if await self.store.get(job.id) is not None:
                await self.store.delete(job.id)
        except Refusal:
            log.warning("job %s stored but not queued; the store is out of reach", job.id)
        try:
            await self.files.remove(job.id)
        except Refusal:  # a bucket's lifecycle rule removes what is left (docs/jobs.md)
            log.warning("job %s: its input could not be removed; the job store is out of reach", job.id)

    def _on_signal(self, signal: Signal, job_id: str) -> None:
        if signal == "cancel":
            self.executor.stop(job_id, "canceled")
        elif (event := self._changed.pop(job_id, None)) is not None:
            event.set()

    async def _sweeper(self) -> None:
        """Count the jobs every few seconds (other replicas change them too) and sweep the expired ones."""
        interval, last = min(60.0, self.settings.job_ttl_s / 4), time.monotonic()
        while True:
            await asyncio.sleep(_CENSUS_S)
            try:
                self.ledger.census = await self.store.counts()
                if time.monotonic() - last >= interval:
                    last = time.monotonic()
                    await self.sweep()
            except Exception:  # a sweep that fails is tried again, never stops the service
                log.exception("job sweep failed")


def _left_s(job: Job) -> float:
    """Model seconds the job still needs: its own measured pace once running, else the learned speed."""
    left = max(0, job.total - job.done)
    if job.status == "running" and job.done and job.started_at:
        return left * (time.time() - job.started_at) / job.done
    return left * job.seconds_per_unit
