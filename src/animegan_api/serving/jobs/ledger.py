"""Writing down what happened to a job: its record (checked against concurrent writers), its files, its log line.

The manager and the replica running a job both change records; every change
goes through :meth:`Ledger.save`, which writes only over the version that was
read (the store's check), tells every replica the job changed, and keeps the
counts the metrics show.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from animegan_api.serving.jobs.records import Job
from animegan_api.serving.jobs.signals import JobSignals
from animegan_api.serving.jobs.store import JobStore

__all__ = ["Ledger"]

log = logging.getLogger("animegan_api.jobs")


class Ledger:
    """One store, one folder of job files, one channel of notices."""

    def __init__(self, store: JobStore, signals: JobSignals, folder: Path, ttl_s: float) -> None:
        self.store, self.signals, self.folder, self._ttl_s = store, signals, folder, ttl_s
        self.census: dict[str, int] = {}  # jobs by status, for the metrics (read when scraped)

    async def save(self, job: Job) -> bool:
        """Write the record if nobody wrote it since it was read, and tell every replica; False if somebody did."""
        if not await self.save_progress(job):
            return False
        self.census = await self.store.counts()
        return True

    async def save_progress(self, job: Job) -> bool:
        """:meth:`save` for a running job's progress (twice a second): no job changes status, so no recount."""
        if not await self.store.save(job):
            return False
        await self.signals.publish("changed", job.id)
        return True

    async def announce(self, job: Job) -> None:
        """Wake whoever watches the job, on every replica; refresh the counts."""
        await self.signals.publish("changed", job.id)
        self.census = await self.store.counts()

    def close_record(self, job: Job) -> None:
        """A finished job keeps only its result, counted at its real size, until it expires."""
        result = self.folder / job.id / job.result_name if job.status == "succeeded" and job.result_name else None
        job.result_bytes = result.stat().st_size if result else None
        job.reserved_bytes = job.result_bytes or 0
        job.expires_at = job.finished_at + self._ttl_s if job.finished_at else None

    def clear_files(self, job: Job) -> None:
        """Everything in a finished job's folder but its result (once its record says it finished)."""
        for path in (self.folder / job.id).glob("*"):
            if not (job.status == "succeeded" and path.name == job.result_name):
                path.unlink(missing_ok=True)

    async def remove(self, job: Job) -> None:
        shutil.rmtree(self.folder / job.id, ignore_errors=True)
        await self.store.delete(job.id)
        await self.announce(job)
        self.log(job, "deleted")

    def log(self, job: Job, event: str) -> None:
        error = job.error["code"] if job.error else None
        fields = {"job": job.id, "kind": job.kind, "status": job.status, "style": job.style, "done": job.done}
        log.info("job %s %s", job.id, event, extra={"fields": {**fields, "error": error, "event": event}})
