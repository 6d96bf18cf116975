"""Where job records live: one small interface, and the embedded SQLite store behind it.

The interface is what the manager needs and no more; the Redis store shared by
replicas (:mod:`~animegan_api.serving.jobs.redis_store`) has the same one. The
SQLite store's methods are short and run on the event loop: SQLite in WAL mode
answers them in well under a millisecond. It alone also claims the next job
(:meth:`SqliteJobStore.claim`): with Redis, the shared queue does that.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, Protocol

from animegan_api.serving.jobs.records import Job

__all__ = ["JobStore", "SqliteJobStore"]


class JobStore(Protocol):
    """The records of every job and their indexes; replicas sharing a store see the same jobs.

    ``save`` writes only over the version it was read at, so two writers (a
    cancel and a start, a replica and the one that took its job over) never
    undo each other: the one that loses re-reads and decides again.
    """

    async def add(self, job: Job) -> Job:
        """Store a new job; where its owner already used its idempotency key, the job stored then instead."""

    async def get(self, job_id: str) -> Job | None: ...

    async def by_key(self, owner: str | None, key: str) -> Job | None:
        """The job submitted with this idempotency key by this owner, if any."""

    async def save(self, job: Job) -> bool:
        """Write the job and bump its version, if nobody wrote it since it was read; False otherwise."""

    async def queued(self) -> list[Job]:
        """Queued jobs, first in line first."""

    async def running(self) -> list[Job]: ...

    async def page(
        self, owner: str | None, status: str | None, limit: int, before: tuple[float, str] | None
    ) -> list[Job]:
        """Jobs newest first, of one owner (None: all), optionally of one status, older than ``before``."""

    async def expired(self, now: float) -> list[Job]: ...

    async def delete(self, job_id: str) -> None: ...

    async def counts(self) -> dict[str, int]:
        """Jobs by status."""

    async def reserved_bytes(self) -> int:
        """Disk every job still on disk may hold."""

    async def close(self) -> None: ...


_COLUMNS = [f.name for f in fields(Job)]
_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(Job)}
_JSON = {"options", "error", "items"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, {", ".join(_COLUMNS[1:])});
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (COALESCE(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""


class SqliteJobStore:
    """Job records in one SQLite file in the job folder: a restart finds them where they were."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)  # untyped columns: SQLite keeps each value's own type
        known = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name in _COLUMNS:  # a folder written by an older release: its records get the new fields' defaults
            if name not in known:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} DEFAULT {json.dumps(_DEFAULTS[name])}")

    async def add(self, job: Job) -> Job:
        row = _row(job)
        marks = ", ".join("?" for _ in row)
        try:
            self._db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({marks})", list(row.values()))
        except sqlite3.IntegrityError:  # a concurrent submit with the same idempotency key got there first
            if job.idempotency_key is None or (known := await self.by_key(job.owner, job.idempotency_key)) is None:
                raise
            return known
        return job

    async def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    async def by_key(self, owner: str | None, key: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE owner IS ? AND idempotency_key = ?", (owner, key))

    async def save(self, job: Job) -> bool:
        return self._save(job)

    async def claim(self) -> Job | None:
        """The oldest queued job, marked running; None when none is queued."""
        with self._db:  # BEGIN IMMEDIATE: no other claim between the read and the write
            self._db.execute("BEGIN IMMEDIATE")
            job = self._one("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1", ())
            if job is None:
                return None
            job.status = "running"
            self._save(job)
            return job

    async def requeue_running(self) -> list[Job]:
        """Put every running job back in the queue: a restart found them running, so they were cut short."""
        jobs = await self.running()
        for job in jobs:
            job.status, job.done, job.started_at = "queued", 0, None
            self._save(job)
        return jobs

    async def queued(self) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at, id", ())

    async def running(self) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE status = 'running' ORDER BY created_at, id", ())

    async def page(
        self, owner: str | None, status: str | None, limit: int, before: tuple[float, str] | None
    ) -> list[Job]:
        where: list[str] = ["1 = 1"]
        values: list[object] = []
        if owner is not None:
            where.append("owner = ?")
            values.append(owner)
        if status is not None:
            where.append("status = ?")
            values.append(status)
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            values += [before[0], before[0], before[1]]
        query = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
        return self._many(query, (*values, limit))

    async def expired(self, now: float) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))

    async def delete(self, job_id: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    async def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    async def reserved_bytes(self) -> int:
        total = self._db.execute("SELECT COALESCE(SUM(reserved_bytes), 0) FROM jobs").fetchone()[0]
        return int(total)

    async def close(self) -> None:
        self._db.close()

    def _save(self, job: Job) -> bool:
        row = _row(job)
        row["version"] = job.version + 1
        assignments = ", ".join(f"{name} = ?" for name in row if name != "id")
        values = [value for name, value in row.items() if name != "id"]
        query = f"UPDATE jobs SET {assignments} WHERE id = ? AND version = ?"
        if self._db.execute(query, [*values, job.id, job.version]).rowcount != 1:
            return False
        job.version += 1
        return True

    def _one(self, query: str, values: tuple[Any, ...]) -> Job | None:
        found = self._many(query, values)
        return found[0] if found else None

    def _many(self, query: str, values: tuple[Any, ...]) -> list[Job]:
        cursor = self._db.execute(query, values)
        names = [column[0] for column in cursor.description]
        return [_job(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def _row(job: Job) -> dict[str, Any]:
    return {name: json.dumps(value) if name in _JSON else value for name, value in asdict(job).items()}


def _job(row: dict[str, Any]) -> Job:
    return Job(
        **{name: json.loads(value) if name in _JSON and value is not None else value for name, value in row.items()}
    )
