"""The order jobs run in, and which replica runs each: embedded, or a Redis stream shared by every replica.

A queue hands job ids to ``run`` (the manager's), a few at a time. ``run``
answers True when the job is done with (it ended, or is gone) and False when it
stopped for a shutdown and must run again, here or on another replica.

:class:`LocalQueue` claims from the embedded SQLite store. :class:`StreaqQueue`
is streaq's (a maintained asyncio job queue on Redis streams) running inside
this service's event loop: a replica consumes at most ``job_workers`` jobs at
once, renews its claim on them every ``0.9 x job_heartbeat_s``, and a job whose
replica stopped renewing (killed, frozen, cut off) is claimed by another one
after ``job_heartbeat_s``. Retries after a crash are the manager's to count
(``job_max_attempts``), so streaq delivers without limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from anyio import CancelScope, sleep_forever
from coredis.exceptions import ConnectionError as RedisConnectionError
from streaq import StreaqRetry, Worker
from streaq.task import AsyncRegisteredTask

from animegan_api.serving.jobs.redis_store import unavailable
from animegan_api.serving.jobs.store import SqliteJobStore

__all__ = ["JobQueue", "LocalQueue", "RunJob", "StreaqQueue"]

log = logging.getLogger("animegan_api.jobs")
RunJob = Callable[[str], Awaitable[bool]]
_RESTART_S = 2.0
_CONNECT_S = 1.0  # how long a submit waits for the queue's connection before answering 503
_TASK = "animegan.job"


class JobQueue(Protocol):
    async def start(self, run: RunJob) -> None:
        """Begin handing queued jobs to ``run``."""

    async def enqueue(self, job_id: str) -> None:
        """Queue a job whose record is already stored as queued."""

    async def close(self) -> None:
        """Stop handing out jobs; ``run`` calls in progress end first (the manager stops them)."""


class LocalQueue:
    """The embedded store's queue: the oldest queued record first, ``workers`` at a time.

    A job a shutdown stopped (or one claimed as the shutdown began) stays marked running; the next start
    puts every such job back in the queue.
    """

    def __init__(self, store: SqliteJobStore, workers: int) -> None:
        self._store, self._workers = store, workers
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self, run: RunJob) -> None:
        for job in await self._store.requeue_running():
            log.info("job %s queued again after a restart", job.id)
        self._tasks = [asyncio.create_task(self._worker(run)) for _ in range(self._workers)]
        self._wake.set()

    async def enqueue(self, job_id: str) -> None:
        self._wake.set()

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, run: RunJob) -> None:
        while not self._closing:
            job = await self._store.claim()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
            elif not await run(job.id):
                return


class _ServiceWorker(Worker[Any]):
    """streaq's worker without its own SIGINT/SIGTERM handling: uvicorn's drain owns the signals.

    streaq 7.2 installs its signal receiver even with ``handle_signals=False``; in
    the service that would take SIGTERM from uvicorn. The lifespan stops the worker.
    """

    async def signal_handler(self, scope: CancelScope) -> None:
        await sleep_forever()


class StreaqQueue:
    """Jobs in a Redis stream every replica consumes; each replica runs at most ``workers`` at once.

    Two streaq workers: one held open for the whole life of the service to enqueue
    (opened again if Redis was away), one consuming when this replica runs jobs
    (started again after Redis was away). Each lives in its own task, as anyio's
    task groups inside them require.
    """

    def __init__(self, url: str, name: str, workers: int, heartbeat_s: float) -> None:
        self._url, self._name, self._workers, self._heartbeat_s = url, name, workers, heartbeat_s
        self._run: RunJob | None = None
        self._deliver: AsyncRegisteredTask[[str], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._open = asyncio.Event()
        self._closing = asyncio.Event()

    async def start(self, run: RunJob) -> None:
        self._run = run
        self._tasks.append(asyncio.create_task(self._hold_producer()))
        if self._workers:
            self._tasks.append(asyncio.create_task(self._consume()))

    async def enqueue(self, job_id: str) -> None:
        with unavailable():
            try:
                async with asyncio.timeout(_CONNECT_S):
                    await self._open.wait()
            except TimeoutError:
                raise RedisConnectionError("the job queue is not connected") from None
            assert self._deliver is not None
            await self._deliver.enqueue(job_id)

    async def close(self) -> None:
        self._closing.set()
        for task in reversed(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _worker(self) -> tuple[_ServiceWorker, AsyncRegisteredTask[[str], None]]:
        worker = _ServiceWorker(
            redis_url=self._url,
            queue_name=self._name,
            concurrency=max(1, self._workers),
            idle_timeout=timedelta(seconds=self._heartbeat_s),
            serializer=json.dumps,
            deserializer=json.loads,
            handle_signals=False,
        )
        return worker, worker.task(name=_TASK, max_tries=None, ttl=timedelta(minutes=10))(self._delivered)

    async def _delivered(self, job_id: str) -> None:
        assert self._run is not None
        try:
            done = await self._run(job_id)
        except Exception as exc:  # its record may be half-written: deliver it again (the manager counts attempts)
            log.exception("job %s could not be run; delivering it again", job_id)
            raise StreaqRetry(str(exc), delay=timedelta(seconds=_RESTART_S)) from exc
        if not done:
            await self.enqueue(job_id)  # stopped by a shutdown: back in the queue for any replica

    async def _hold_producer(self) -> None:
        while True:
            try:
                producer, self._deliver = self._worker()
                async with producer:
                    self._open.set()
                    await self._closing.wait()
                    return
            except Exception as exc:  # Redis out of reach: enqueues answer 503 until it is back
                log.warning("job queue unreachable (%s); trying again in %.0f s", exc, _RESTART_S)
            finally:
                self._open.clear()
            await asyncio.sleep(_RESTART_S)

    async def _consume(self) -> None:
        """streaq's consumer, started again after Redis was out of reach."""
        while True:
            try:
                await self._worker()[0].run_async()
            except Exception as exc:  # Redis gone or restarting: its claims lapse and come back
                log.warning("job queue consumer stopped (%s); restarting in %.0f s", exc, _RESTART_S)
            await asyncio.sleep(_RESTART_S)
