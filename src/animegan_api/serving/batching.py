"""Micro-batching: waiting requests for the same model and input shape share one forward.

The first request of a key opens a batch; later ones join it until it is
full or a slot frees up (after at most ``max_wait_s`` more). Each member gets
its own slice of the output, and leaving (deadline, disconnect) only abandons
that slice, never the forward the others wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from animegan_api.serving.speed import SpeedEstimates
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket, watch

__all__ = ["Batcher", "Slots"]

Model = Callable[[np.ndarray], np.ndarray]


class Slots(Protocol):
    """What a batch needs from the engine: a slot without a deadline, a forward on the pool, the learned speed."""

    speed: SpeedEstimates

    async def take_slot(self) -> None: ...

    def release_slot(self) -> None: ...

    def start(self, fn: Model, inputs: np.ndarray, *, count: int = 1) -> asyncio.Future[np.ndarray]: ...


@dataclass
class _Member:
    ticket: Ticket
    batch: np.ndarray
    result: asyncio.Future[np.ndarray]
    joined: float = field(default_factory=time.perf_counter)


@dataclass
class _Batch:
    """Requests for one model and input shape that will run as one forward."""

    fn: Model
    members: list[_Member] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher:
    """Open batches by key, each dispatched on one of the engine's slots."""

    def __init__(self, engine: Slots, max_batch: int, max_wait_s: float) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._open: dict[Hashable, _Batch] = {}
        self._dispatchers: set[asyncio.Task[None]] = set()

    async def run(
        self, ticket: Ticket, fn: Model, batch: np.ndarray, key: Hashable, client_gone: Awaitable[object] | None
    ) -> np.ndarray:
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Batch(fn)
            dispatcher = asyncio.ensure_future(self._dispatch(key, group))
            self._dispatchers.add(dispatcher)
            dispatcher.add_done_callback(self._dispatchers.discard)
        member = _Member(ticket, batch, asyncio.get_running_loop().create_future())
        group.members.append(member)
        if len(group.members) >= self.max_batch:
            self._close(key, group)
        return await self._result(member, client_gone)

    def shutdown(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.cancel()

    def _close(self, key: Hashable, group: _Batch) -> None:
        if self._open.get(key) is group:
            del self._open[key]
        group.full.set()

    async def _dispatch(self, key: Hashable, group: _Batch) -> None:
        """Take a slot for the batch, let it fill a little longer, then run it once for every member still waiting."""
        await self.engine.take_slot()
        try:
            if self.max_wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.full.wait(), self.max_wait_s)
            self._close(key, group)
            live = self._still_possible(group)
        except BaseException:
            self.engine.release_slot()
            raise
        if not live:  # everyone left while the batch waited: no forward
            self.engine.release_slot()
            return
        await self._forward(group.fn, live)

    def _still_possible(self, group: _Batch) -> list[_Member]:
        """Members still waiting whose deadline leaves time for the forward; the others get 504 now."""
        waiting = [m for m in group.members if not m.result.done()]
        needed = self.engine.speed.expected_s(group.fn, sum(m.batch.size for m in waiting))
        for member in waiting:
            if member.ticket.remaining() < needed:
                _settle(member.result, exception=DeadlineExceeded())
        return [m for m in waiting if not m.result.done()]

    async def _forward(self, fn: Model, live: list[_Member]) -> None:
        started = time.perf_counter()
        for member in live:
            member.ticket.queue_s = started - member.joined
            member.ticket.started = member.ticket.started or time.monotonic()
        inputs = live[0].batch if len(live) == 1 else np.concatenate([m.batch for m in live])
        future = self.engine.start(fn, inputs, count=len(live))
        try:
            output = await asyncio.shield(future)
        except asyncio.CancelledError:  # shutting down: the members end with a deadline error
            for member in live:
                member.result.cancel()
            raise
        except Exception as exc:
            for member in live:
                _settle(member.result, exception=exc)
            return
        elapsed, offset = time.perf_counter() - started, 0
        for member in live:
            member.ticket.inference_s = elapsed
            count = member.batch.shape[0]
            _settle(member.result, output[offset : offset + count])
            offset += count

    async def _result(self, member: _Member, client_gone: Awaitable[object] | None) -> np.ndarray:
        """Wait for this member's slice; leaving (deadline, disconnect, cancellation) only abandons the slice."""
        try:
            left = await watch(member.result, member.ticket, client_gone)
        finally:
            if not member.result.done():
                member.result.cancel()
        if not member.result.cancelled():
            return member.result.result()
        raise ClientGone if left else DeadlineExceeded


def _settle(
    result: asyncio.Future[np.ndarray], value: np.ndarray | None = None, exception: Exception | None = None
) -> None:
    if result.done():  # its request already left
        return
    if exception is not None:
        result.set_exception(exception)
    else:
        result.set_result(value)  # type: ignore[arg-type]
