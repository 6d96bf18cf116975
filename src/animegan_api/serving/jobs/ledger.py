"""Writing down what happened to a job: its record (checked against concurrent writers), its files, its log line.

The manager and the replica running a job both change records; every change
goes through :meth:`Ledger.save`, which writes only over the version that was
read (the store's check), tells every replica the job changed, and keeps the
counts the metrics show.
"""

from __future__ import annotations

import logging

from animegan_api.failures import Refusal
from animegan_api.serving.jobs.files import JobFiles
from animegan_api.serving.jobs.records import Job
from animegan_api.serving.jobs.signals import JobSignals
from animegan_api.serving.jobs.store import JobStore

__all__ = ["Ledger"]

log = logging.getLogger("animegan_api.jobs")


class Ledger:
    """One store of records, one of files, one channel of notices."""

    def __init__(self, store: JobStore, signals: JobSignals, files: JobFiles, ttl_s: float) -> None:
        self.store, self.signals, self.files, self._ttl_s = store, signals, files, ttl_s
        self.census: dict[str, int] = {}  # jobs by status, for the metrics (read when scraped)

    async def save(self, job: Job) -> bool:
        """Write the record if nobody wrote it since it was read, and tell every replica; False if somebody did.

        A job saved as finished keeps only its result from then on, gone before anyone is told it finished.
        """
        if not await self.store.save(job):
            return False
        if job.final:
            await self._clear_files(job)
        await self.announce(job)
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
        """A finished job keeps only its result, counted at its real size (measured by its run), until it expires."""
        job.result_bytes = job.result_bytes if job.status == "succeeded" and job.result_name else None
        job.reserved_bytes = job.result_bytes or 0
        job.expires_at = job.finished_at + self._ttl_s if job.finished_at else None

    async def _clear_files(self, job: Job) -> None:
        """Every file of a finished job's but its result.

        A store out of reach leaves them to the sweep, which removes every file of the job when it expires.
        """
        try:
            await self.files.clear(job.id, job.result_name if job.status == "succeeded" else None)
        except Refusal as exc:
            log.warning("job %s: files kept until it expires (%s)", job.id, exc.message)

    async def remove(self, job: Job) -> None:
        await self.files.remove(job.id)
        await self.store.delete(job.id)
        await self.announce(job)
        self.log(job, "deleted")

    def log(self, job: Job, event: str) -> None:
        error = job.error["code"] if job.error else None
        fields = {"job": job.id, "kind": job.kind, "status": job.status, "style": job.style, "done": job.done}
        log.info("job %s %s", job.id, event, extra={"fields": {**fields, "error": error, "event": event}})
