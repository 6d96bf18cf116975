"""Job records in Redis, shared by every replica: the same interface as the embedded store.

Each record is one JSON string; sorted sets index them by creation time (all,
per owner, per status) and by expiry, a hash counts the disk each job may hold,
and a key per idempotency key names its job. Every write that could race
(a submit with a known key, a save against a cancel from another replica) is one
Lua script, so Redis applies it whole. All keys share one hash tag (the
prefix), so a Redis Cluster keeps them in one slot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any

import coredis
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.response.types import ScoredMember
from coredis.tokens import PureToken

from animegan_api.failures import Refusal
from animegan_api.serving.jobs.records import STATUSES, Job

__all__ = ["RedisJobStore", "unavailable"]

_FIELDS = frozenset(f.name for f in fields(Job))
# KEYS: the record, the owner's idempotency keys, all jobs, the owner's jobs, queued jobs, reserved bytes.
# ARGV: id, record, created_at, idempotency key ('' for none), reserved bytes.
_ADD = """
if ARGV[4] ~= '' then
  local known = redis.call('HGET', KEYS[2], ARGV[4])
  if known then return known end
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[5])
return ARGV[1]
"""
# KEYS: the record, the five status sets, the target status set, expiries, reserved bytes.
# ARGV: id, record, the version it must have now, created_at, expires_at ('' for none), reserved bytes.
_SAVE = """
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current)['version'] ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
for i = 2, 6 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1])
if ARGV[5] == '' then redis.call('ZREM', KEYS[8], ARGV[1]) else redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1]) end
redis.call('HSET', KEYS[9], ARGV[1], ARGV[6])
return 1
"""


_UNREACHABLE = (RedisConnectionError, TimeoutError, OSError)


@contextmanager
def unavailable() -> Iterator[None]:
    """Redis out of reach is a 503 for the job routes (``jobs_unavailable``), never a 500.

    coredis runs its connections in anyio task groups, so the error may come wrapped in an exception group.
    """
    try:
        yield
    except* _UNREACHABLE as group:
        reason = group.exceptions[0]
        raise Refusal("jobs_unavailable", f"the job store cannot be reached ({reason})", {"Retry-After": "5"}) from None


class RedisJobStore:
    """Job records in Redis under ``prefix``; every replica given the same URL and prefix shares them."""

    def __init__(self, client: coredis.Redis[str], prefix: str) -> None:
        self._redis, self._prefix = client, prefix
        self._add = client.register_script(_ADD)
        self._save = client.register_script(_SAVE)

    async def add(self, job: Job) -> Job:
        keys = [self._k("job", job.id), self._keys_of(job.owner), self._k("created"), self._owner(job.owner)]
        keys.append(self._status(job.status))
        argv: list[str | float] = [job.id, _dump(job), job.created_at, job.idempotency_key or "", job.reserved_bytes]
        with unavailable():
            stored: object = await self._add(keys=[*keys, self._k("reserved")], args=argv)
        if stored == job.id:
            return job
        known = await self.get(str(stored))
        return known if known is not None else job

    async def get(self, job_id: str) -> Job | None:
        with unavailable():
            raw = await self._redis.get(self._k("job", job_id))
        return _load(raw) if raw else None

    async def by_key(self, owner: str | None, key: str) -> Job | None:
        with unavailable():
            job_id = await self._redis.hget(self._keys_of(owner), key)
        return await self.get(job_id) if job_id else None

    async def save(self, job: Job) -> bool:
        job.version += 1
        statuses = [self._status(status) for status in STATUSES]
        keys = [self._k("job", job.id), *statuses, self._status(job.status), self._k("expires"), self._k("reserved")]
        expires: str | float = "" if job.expires_at is None else job.expires_at
        argv: list[str | float] = [job.id, _dump(job), job.version - 1, job.created_at, expires, job.reserved_bytes]
        with unavailable():
            saved = bool(await self._save(keys=keys, args=argv))
        if not saved:
            job.version -= 1
        return saved

    async def queued(self) -> list[Job]:
        return await self._members(self._status("queued"))

    async def running(self) -> list[Job]:
        return await self._members(self._status("running"))

    async def page(
        self, owner: str | None, status: str | None, limit: int, before: tuple[float, str] | None
    ) -> list[Job]:
        index = self._owner(owner) if owner is not None else self._k("created")
        found: list[Job] = []
        async for job in self._newest_first(index, before):
            if status is None or job.status == status:
                found.append(job)
                if len(found) == limit:
                    break
        return found

    async def expired(self, now: float) -> list[Job]:
        with unavailable():
            ids = await self._redis.zrange(self._k("expires"), float("-inf"), now, PureToken.BYSCORE)
        return await self._many([str(job_id) for job_id in ids])

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
        if job is None:
            return
        with unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete([self._k("job", job_id)])
                for index in (self._k("created"), self._owner(job.owner), self._k("expires")):
                    pipe.zrem(index, [job_id])
                for status in STATUSES:
                    pipe.zrem(self._status(status), [job_id])
                pipe.hdel(self._k("reserved"), [job_id])
                if job.idempotency_key:
                    pipe.hdel(self._keys_of(job.owner), [job.idempotency_key])

    async def counts(self) -> dict[str, int]:
        with unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                sizes = [pipe.zcard(self._status(status)) for status in STATUSES]
            counted = {status: int(await size) for status, size in zip(STATUSES, sizes, strict=True)}
        return {status: count for status, count in counted.items() if count}

    async def reserved_bytes(self) -> int:
        with unavailable():
            return sum(int(value) for value in await self._redis.hvals(self._k("reserved")))

    async def close(self) -> None:
        """The client belongs to whoever made it; nothing to release here."""

    async def _newest_first(self, index: str, before: tuple[float, str] | None) -> AsyncIterator[Job]:
        top = float("inf") if before is None else before[0]
        offset = 0
        while True:
            with unavailable():
                chunk = await self._redis.zrange(
                    index, top, float("-inf"), PureToken.BYSCORE, rev=True, offset=offset, count=100, withscores=True
                )
            if not chunk:
                return
            offset += len(chunk)
            scored = [m for m in chunk if isinstance(m, ScoredMember)]
            wanted = [str(m.member) for m in scored if before is None or (m.score, str(m.member)) < before]
            for job in await self._many(wanted):
                yield job

    async def _members(self, index: str) -> list[Job]:
        with unavailable():
            ids = await self._redis.zrange(index, 0, -1)
        return await self._many(list(ids))

    async def _many(self, ids: list[str]) -> list[Job]:
        if not ids:
            return []
        with unavailable():
            raws = await self._redis.mget([self._k("job", job_id) for job_id in ids])
        return [_load(raw) for raw in raws if raw]

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _owner(self, owner: str | None) -> str:
        return self._k("owner", owner or "")

    def _status(self, status: str) -> str:
        return self._k("status", status)

    def _keys_of(self, owner: str | None) -> str:
        return self._k("idempotency", owner or "")


def _dump(job: Job) -> str:
    return json.dumps(asdict(job), separators=(",", ":"))


def _load(raw: str) -> Job:
    record: dict[str, Any] = json.loads(raw)
    return Job(**{name: value for name, value in record.items() if name in _FIELDS})
