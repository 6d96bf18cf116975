"""The embedded job store: records survive a reopen, claims go oldest first, pages and keys are per owner."""

from __future__ import annotations

from pathlib import Path

from animegan_api.serving.jobs.records import Job, new_id
from animegan_api.serving.jobs.store import SqliteJobStore


def _job(created: float, owner: str | None = None, **fields: object) -> Job:
    return Job(new_id(), "video", "random", {"max_side": 64}, owner=owner, created_at=created, **fields)  # type: ignore[arg-type]


def test_records_survive_a_reopen_and_running_jobs_are_queued_again(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    first, second = _job(1.0, total=10), _job(2.0)
    store.add(first)
    store.add(second)
    claimed = store.claim()
    assert claimed is not None and claimed.id == first.id and claimed.status == "running"
    claimed.done = 4
    store.save(claimed)
    store.close()
    reopened = SqliteJobStore(tmp_path / "jobs.db")
    requeued = reopened.requeue_running()
    assert [job.id for job in requeued] == [first.id]
    assert [(job.id, job.status, job.done) for job in reopened.queued()] == [
        (first.id, "queued", 0),
        (second.id, "queued", 0),
    ]
    again = reopened.get(first.id)
    assert again is not None and again.options == {"max_side": 64} and again.version == 3


def test_claims_take_the_oldest_and_none_when_empty(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    jobs = [_job(float(t)) for t in (3, 1, 2)]
    for job in jobs:
        store.add(job)
    order = [claimed.created_at for claimed in iter(store.claim, None)]
    assert order == [1.0, 2.0, 3.0]
    assert store.counts() == {"running": 3}


def test_pages_are_newest_first_per_owner_with_a_cursor(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    for t in range(5):
        store.add(_job(float(t), owner="key:a"))
    store.add(_job(9.0, owner="key:b"))
    page = store.page("key:a", None, 2, None)
    assert [job.created_at for job in page] == [4.0, 3.0]
    rest = store.page("key:a", None, 10, (page[-1].created_at, page[-1].id))
    assert [job.created_at for job in rest] == [2.0, 1.0, 0.0]
    assert len(store.page(None, None, 10, None)) == 6
    assert store.page("key:a", "running", 10, None) == []


def test_idempotency_keys_belong_to_their_owner(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    job = _job(1.0, owner="key:a", idempotency_key="upload-1")
    store.add(job)
    found = store.by_key("key:a", "upload-1")
    assert found is not None and found.id == job.id
    assert store.by_key("key:b", "upload-1") is None


def test_expiry_and_disk_accounting(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    old, fresh = _job(1.0, expires_at=100.0, reserved_bytes=10), _job(2.0, expires_at=300.0, reserved_bytes=5)
    store.add(old)
    store.add(fresh)
    assert [job.id for job in store.expired(200.0)] == [old.id]
    assert store.reserved_bytes() == 15
    store.delete(old.id)
    assert store.get(old.id) is None and store.reserved_bytes() == 5


def test_a_second_insert_with_a_used_key_returns_the_first_job(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    first = _job(1.0, idempotency_key="k")
    assert store.add(first) is first
    second = store.add(_job(2.0, idempotency_key="k"))  # no owner (keys off): still one job per key
    assert second.id == first.id
    other_owner = _job(3.0, owner="key:b", idempotency_key="k")
    assert store.add(other_owner) is other_owner
