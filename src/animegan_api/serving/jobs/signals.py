"""Notices between replicas: a job changed (wake its event streams), a job must stop (cancel it where it runs).

Notices only make things prompt; nothing depends on one arriving. Event
streams re-read the record every 15 s anyway, and a cancel is also written
into the job's record, where the replica running it finds it at its next
progress save.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal, Protocol

import coredis

__all__ = ["Handler", "JobSignals", "LocalSignals", "RedisSignals", "Signal"]

log = logging.getLogger("animegan_api.jobs")
Signal = Literal["changed", "cancel"]
Handler = Callable[[Signal, str], None]
_RETRY_S = 1.0


class JobSignals(Protocol):
    def listen(self, handler: Handler) -> None:
        """Call ``handler`` with every notice, this replica's own included."""

    async def publish(self, signal: Signal, job_id: str) -> None: ...

    async def close(self) -> None: ...


class LocalSignals:
    """One replica: a notice is a direct call."""

    def __init__(self) -> None:
        self._handler: Handler | None = None

    def listen(self, handler: Handler) -> None:
        self._handler = handler

    async def publish(self, signal: Signal, job_id: str) -> None:
        if self._handler is not None:
            self._handler(signal, job_id)

    async def close(self) -> None:
        self._handler = None


class RedisSignals:
    """Every replica: Redis pub/sub on one channel, ``<signal>:<job id>`` per message."""

    def __init__(self, client: coredis.Redis[str], prefix: str) -> None:
        self._redis, self._channel = client, prefix + "signals"
        self._task: asyncio.Task[None] | None = None

    def listen(self, handler: Handler) -> None:
        self._task = asyncio.create_task(self._listen(handler))

    async def publish(self, signal: Signal, job_id: str) -> None:
        try:
            await self._redis.publish(self._channel, f"{signal}:{job_id}")
        except Exception as exc:  # a lost notice only delays: the record says the same
            log.warning("job notice %s for %s not sent (%s)", signal, job_id, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self, handler: Handler) -> None:
        while True:
            try:
                async with self._redis.pubsub(channels=[self._channel], ignore_subscribe_messages=True) as notices:
                    async for message in notices:
                        signal, _, job_id = str(message["data"]).partition(":")
                        if signal in ("changed", "cancel"):
                            handler(signal, job_id)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: subscribe again
                log.warning("job notices interrupted (%s)", exc)
            await asyncio.sleep(_RETRY_S)
