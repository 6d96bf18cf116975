"""Where jobs live, chosen by the settings: embedded (SQLite in the job folder) or shared (Redis).

Without ``redis_url`` one replica keeps its records in SQLite and its queue in
memory; ``make serve`` needs nothing more. With it, records, the queue (streaq)
and notices are in Redis, and every replica pointed at the same Redis and the
same files (a job folder on a shared volume, or ``job_store`` in S3-compatible
object storage) answers for every job.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import coredis
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.retry import ConstantRetryPolicy

from animegan_api.config import Settings
from animegan_api.serving.jobs.files import FolderFiles, JobFiles
from animegan_api.serving.jobs.queues import JobQueue, LocalQueue, StreaqQueue
from animegan_api.serving.jobs.redis_store import RedisJobStore
from animegan_api.serving.jobs.signals import JobSignals, LocalSignals, RedisSignals
from animegan_api.serving.jobs.store import JobStore, SqliteJobStore

__all__ = ["open_backend", "open_files", "open_redis"]

_CONNECT_S = 1.0  # a Redis that does not answer in this long is out of reach: job routes answer 503
_COMMAND_S = 5.0


async def open_backend(settings: Settings, stack: AsyncExitStack) -> tuple[JobStore, JobQueue, JobSignals]:
    """The store, queue and notices for these settings; what must be closed is pushed on ``stack``."""
    if settings.redis_url is None:
        store = await asyncio.to_thread(SqliteJobStore, settings.job_dir / "jobs.db")
        return store, LocalQueue(store, settings.job_workers), LocalSignals()
    client = await open_redis(settings.redis_url, stack)
    prefix = settings.redis_prefix
    queue = StreaqQueue(settings.redis_url, prefix + "jobs", settings.job_workers, settings.job_heartbeat_s)
    return RedisJobStore(client, prefix), queue, RedisSignals(client, prefix)


async def open_files(settings: Settings) -> JobFiles:
    """The job files' store: ``job_store`` in object storage, else the job folder's ``files``."""
    if settings.job_store is None:
        return FolderFiles(settings.job_dir / "files")
    from animegan_api.serving.jobs.s3_files import S3Files  # boto3 loads its data files: only when asked for

    return await asyncio.to_thread(S3Files, settings.job_store, settings.job_dir / "work", settings.job_result_redirect)


async def open_redis(url: str, stack: AsyncExitStack) -> coredis.Redis[str]:
    """A coredis client for ``url``, open until ``stack`` closes.

    coredis keeps its connections in an anyio task group, which must be left by
    the task that entered it; a task of its own holds it, so whichever task
    closes the stack (the lifespan's, a test's) may.
    """
    client: coredis.Redis[str] = coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=_CONNECT_S,
        stream_timeout=_COMMAND_S,
        retry_policy=ConstantRetryPolicy((RedisConnectionError,), retries=1, delay=0.05),  # a pooled connection
    )  # that Redis closed on a restart is replaced once; a Redis that is away answers at once
    opened, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with client:
            opened.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    waiting = asyncio.create_task(opened.wait())
    await asyncio.wait({holder, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if holder.done():
        holder.result()  # the client could not open: its error, here

    async def let_go() -> None:
        release.set()
        await asyncio.gather(holder, return_exceptions=True)

    stack.push_async_callback(let_go)
    return client
