"""Both job stores keep the same contract: pages and keys per owner, expiry, disk, and writes checked
against the version read. The embedded one also survives a reopen and claims oldest first."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import fields
from pathlib import Path

import pytest

from animegan_api.serving.jobs.backends import open_redis
from animegan_api.serving.jobs.records import Job, new_id
from animegan_api.serving.jobs.redis_store import RedisJobStore
from animegan_api.serving.jobs.store import JobStore, SqliteJobStore
from redis_server import RedisServer


def _job(created: float, owner: str | None = None, **fields: object) -> Job:
    return Job(new_id(), "video", "random", {"max_side": 64}, owner=owner, created_at=created, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        yield SqliteJobStore(tmp_path / "jobs.db")
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with AsyncExitStack() as stack:
        yield RedisJobStore(await open_redis(server.url, stack), "{test}:")


async def test_pages_are_newest_first_per_owner_with_a_cursor(store: JobStore) -> None:
    for t in range(5):
        await store.add(_job(float(t), owner="key:a"))
    await store.add(_job(9.0, owner="key:b"))
    page = await store.page("key:a", None, 2, None)
    assert [job.created_at for job in page] == [4.0, 3.0]
    rest = await store.page("key:a", None, 10, (page[-1].created_at, page[-1].id))
    assert [job.created_at for job in rest] == [2.0, 1.0, 0.0]
    assert len(await store.page(None, None, 10, None)) == 6
    assert await store.page("key:a", "running", 10, None) == []


async def test_idempotency_keys_belong_to_their_owner(store: JobStore) -> None:
    job = _job(1.0, owner="key:a", idempotency_key="upload-1")
    await store.add(job)
    found = await store.by_key("key:a", "upload-1")
    assert found is not None and found.id == job.id
    assert await store.by_key("key:b", "upload-1") is None
    assert await store.by_key("key", "a:upload-1") is None  # owner and key never run together


async def test_a_second_insert_with_a_used_key_returns_the_first_job(store: JobStore) -> None:
    first = _job(1.0, idempotency_key="k")
    assert await store.add(first) is first
    second = await store.add(_job(2.0, idempotency_key="k"))  # no owner (keys off): still one job per key
    assert second.id == first.id
    other_owner = _job(3.0, owner="key:b", idempotency_key="k")
    assert await store.add(other_owner) is other_owner
    await store.delete(first.id)
    assert await store.by_key(None, "k") is None  # the key goes with its job


async def test_expiry_and_disk_accounting(store: JobStore) -> None:
    old, fresh = _job(1.0, expires_at=100.0, reserved_bytes=10), _job(2.0, expires_at=300.0, reserved_bytes=5)
    for job in (old, fresh):
        await store.add(job)
        assert await store.save(job)  # the expiry index follows saves
    assert [job.id for job in await store.expired(200.0)] == [old.id]
    assert await store.reserved_bytes() == 15
    await store.delete(old.id)
    assert await store.get(old.id) is None and await store.reserved_bytes() == 5


async def test_a_save_over_a_stale_version_is_refused(store: JobStore) -> None:
    """Two writers read version 0; the second write would undo the first, so it is refused."""
    job = _job(1.0, total=10)
    await store.add(job)
    mine, theirs = await store.get(job.id), await store.get(job.id)
    assert mine is not None and theirs is not None
    theirs.cancel_requested = True
    assert await store.save(theirs) and theirs.version == 1
    mine.status, mine.done = "running", 3
    assert not await store.save(mine) and mine.version == 0
    stored = await store.get(job.id)
    assert stored is not None and stored.cancel_requested and stored.status == "queued"
    assert await store.counts() == {"queued": 1}
    assert [found.id for found in await store.queued()] == [job.id] and await store.running() == []


async def test_sqlite_records_survive_a_reopen_and_running_jobs_are_queued_again(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    first, second = _job(1.0, total=10), _job(2.0)
    await store.add(first)
    await store.add(second)
    claimed = await store.claim()
    assert claimed is not None and claimed.id == first.id and claimed.status == "running"
    claimed.done = 4
    assert await store.save(claimed)
    await store.close()
    reopened = SqliteJobStore(tmp_path / "jobs.db")
    requeued = await reopened.requeue_running()
    assert [job.id for job in requeued] == [first.id]
    assert [(job.id, job.status, job.done) for job in await reopened.queued()] == [
        (first.id, "queued", 0),
        (second.id, "queued", 0),
    ]
    again = await reopened.get(first.id)
    assert again is not None and again.options == {"max_side": 64} and again.version == 3


async def test_sqlite_claims_take_the_oldest_and_none_when_empty(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    for t in (3, 1, 2):
        await store.add(_job(float(t)))
    order = []
    while (claimed := await store.claim()) is not None:
        order.append(claimed.created_at)
    assert order == [1.0, 2.0, 3.0]
    assert await store.counts() == {"running": 3}


async def test_sqlite_reads_a_folder_an_older_release_wrote(tmp_path: Path) -> None:
    """A release before job attempts and cancel requests: its records load with those at their defaults."""
    old = [f.name for f in fields(Job) if f.name not in ("attempts", "cancel_requested")]
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        db.execute(f"CREATE TABLE jobs (id TEXT PRIMARY KEY, {', '.join(old[1:])})")
        db.execute(
            "INSERT INTO jobs (id, kind, style, options, status, created_at, version) VALUES "
            "('job_old', 'video', 's', '{}', 'queued', 1.0, 0)"
        )
    store = SqliteJobStore(tmp_path / "jobs.db")
    job = await store.get("job_old")
    assert job is not None and job.attempts == 0 and not job.cancel_requested
    assert await store.save(job) and job.version == 1
