"""Where job records live: one small interface, and the embedded SQLite store behind it.

The interface is what the manager needs and no more, so a store shared by
replicas can take the SQLite one's place. Every method is short and runs on
the event loop: SQLite in WAL mode answers these in well under a millisecond.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

from animegan_api.serving.jobs.records import Job

__all__ = ["JobStore", "SqliteJobStore"]


class JobStore(Protocol):
    """The records of every job, their order in the queue, and atomic claims of the next one."""

    def add(self, job: Job) -> Job:
        """Store a new job; where its owner already used its idempotency key, the job stored then instead."""

    def get(self, job_id: str) -> Job | None: ...

    def by_key(self, owner: str | None, key: str) -> Job | None:
        """The job submitted with this idempotency key by this owner, if any."""

    def save(self, job: Job) -> None:
        """Write the job's state and bump its version."""

    def claim(self) -> Job | None:
        """The oldest queued job, now running; None when none is queued."""

    def requeue_running(self) -> list[Job]:
        """Put every running job back in the queue (a restart found them running)."""

    def queued(self) -> list[Job]:
        """Queued jobs, first in line first."""

    def running(self) -> list[Job]: ...

    def page(self, owner: str | None, status: str | None, limit: int, before: tuple[float, str] | None) -> list[Job]:
        """Jobs newest first, of one owner (None: all), optionally of one status, older than ``before``."""

    def expired(self, now: float) -> list[Job]: ...

    def delete(self, job_id: str) -> None: ...

    def counts(self) -> dict[str, int]:
        """Jobs by status."""

    def reserved_bytes(self) -> int:
        """Disk every job still on disk may hold."""

    def close(self) -> None: ...


_COLUMNS = [f.name for f in fields(Job)]
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

    def add(self, job: Job) -> Job:
        row = _row(job)
        marks = ", ".join("?" for _ in row)
        try:
            self._db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({marks})", list(row.values()))
        except sqlite3.IntegrityError:  # a concurrent submit with the same idempotency key got there first
            if job.idempotency_key is None or (known := self.by_key(job.owner, job.idempotency_key)) is None:
                raise
            return known
        return job

    def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def by_key(self, owner: str | None, key: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE owner IS ? AND idempotency_key = ?", (owner, key))

    def save(self, job: Job) -> None:
        job.version += 1
        row = _row(job)
        assignments = ", ".join(f"{name} = ?" for name in row if name != "id")
        values = [value for name, value in row.items() if name != "id"]
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*values, job.id])

    def claim(self) -> Job | None:
        with self._db:  # BEGIN IMMEDIATE: no other claim between the read and the write
            self._db.execute("BEGIN IMMEDIATE")
            job = self._one("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1", ())
            if job is None:
                return None
            job.status = "running"
            self.save(job)
            return job

    def requeue_running(self) -> list[Job]:
        jobs = self.running()
        for job in jobs:
            job.status, job.done, job.started_at = "queued", 0, None
            self.save(job)
        return jobs

    def queued(self) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at, id", ())

    def running(self) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE status = 'running' ORDER BY created_at, id", ())

    def page(self, owner: str | None, status: str | None, limit: int, before: tuple[float, str] | None) -> list[Job]:
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

    def expired(self, now: float) -> list[Job]:
        return self._many("SELECT * FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))

    def delete(self, job_id: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    def reserved_bytes(self) -> int:
        total = self._db.execute("SELECT COALESCE(SUM(reserved_bytes), 0) FROM jobs").fetchone()[0]
        return int(total)

    def close(self) -> None:
        self._db.close()

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
