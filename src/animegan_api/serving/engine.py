"""Admission control, inference slots and the inference thread pool.

A request first takes a *place* (running or waiting) with :meth:`InferenceEngine.admit`;
when all ``workers + max_queue`` places are taken it is refused at once rather
than left to pile up. Holding a place, it may decode its upload, then waits on
an ``asyncio.Semaphore(workers)`` for a *slot* and runs the model on a
dedicated ``ThreadPoolExecutor``. A slot is handed back only when the model's
thread has really finished, so a request abandoned at its deadline can never
let more forwards run at once than there are workers.

Admission also predicts the wait: :meth:`InferenceEngine.backlog_s` adds up
the model time every admitted request is still expected to need (see
:mod:`speed`), so a request whose turn would come after its deadline is
refused at once with a ``Retry-After`` instead of queueing into a 504. One
that still reaches a slot with less time left than its forward needs is
answered 504 at once instead of starting a forward whose result nobody
would get. Micro-batching lives in :mod:`batching`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import numpy as np

from animegan_api.runtime.priority import lower_priority
from animegan_api.serving.batching import Batcher
from animegan_api.serving.budget import Budget
from animegan_api.serving.speed import SpeedEstimates, elements
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Overloaded, Ticket, TooLarge, watch

__all__ = ["InferenceEngine"]

T = TypeVar("T")


class InferenceEngine:
    """Bounded, deadline-aware access to a pool of inference threads."""

    def __init__(
        self,
        workers: int,
        max_queue: int,
        timeout_s: float,
        max_batch: int = 1,
        max_batch_wait_ms: float = 0.0,
        inference_nice: int = 0,
        budget: Budget | None = None,
    ) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.admitted = 0
        self.running = 0
        self.background = 0  # job forwards running now (counted in ``running`` too)
        self._background_end = 0.0  # when the running job forward is expected to end, on the monotonic clock
        self._idle = asyncio.Event()  # no interactive request is waiting
        self._idle.set()
        self._tickets: set[Ticket] = set()
        self.typical_s = 0.0  # a recent request's model seconds, any style: the guess before its size is known
        self.speed = SpeedEstimates()
        self.budget = budget
        self._slots = asyncio.Semaphore(workers)
        self._batcher = Batcher(self, max_batch, max_batch_wait_ms / 1000) if max_batch > 1 else None
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="animegan-infer",
            initializer=lower_priority,
            initargs=(inference_nice,),
        )

    @property
    def waiting(self) -> int:
        """Admitted interactive requests not yet running a forward."""
        return self.admitted - (self.running - self.background)

    @property
    def full(self) -> bool:
        """Every running and waiting place is taken: the next :meth:`admit` would refuse."""
        return self.admitted >= self.workers + self.max_queue

    def admit(self, timeout_s: float | None = None) -> Ticket:
        """Take a place or raise :class:`Overloaded` at once; use the ticket in a ``with`` block.

        ``timeout_s`` is the client's own deadline, never longer than the engine's.
        """
        if self.full:
            raise Overloaded
        self.admitted += 1
        self._idle.clear()
        limit = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        ticket = Ticket(time.monotonic() + limit, self._leave, timeout_s=limit, predicted_s=self.typical_s)
        self._tickets.add(ticket)  # counted at once: a burst's requests see each other before any is sized
        return ticket

    def backlog_s(self, besides: Ticket | None = None) -> float:
        """Predicted seconds until a worker is free for one more request: the admitted work ahead, per worker."""
        now = time.monotonic()
        ahead = sum(ticket.left_to_run(now) for ticket in self._tickets if ticket is not besides)
        if self.background:  # a job's forward holds a slot until it ends
            ahead += max(0.0, self._background_end - now)
        return ahead / self.workers

    async def reserve(
        self, ticket: Ticket, nbytes: int, client_gone: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Hold ``nbytes`` of the memory budget until the ticket is given back, waiting for them if need be.

        Raises :class:`TooLarge` at once when they could never fit; waiting ends
        at the ticket's deadline or the client's disconnect like a slot's.
        """
        if self.budget is None:
            return
        if not self.budget.fits(nbytes):
            raise TooLarge
        await self.budget.reserve(nbytes, ticket, client_gone)
        ticket.memory_bytes = nbytes

    async def run(
        self,
        ticket: Ticket,
        fn: Callable[..., T],
        *args: object,
        client_gone: Awaitable[object] | None = None,
    ) -> T:
        """Wait for a slot (giving up if ``client_gone`` completes), then run ``fn`` in the pool."""
        queued_at = time.perf_counter()
        await self._acquire(ticket, client_gone)
        ticket.queue_s = time.perf_counter() - queued_at
        if ticket.remaining() < self.speed.expected_s(fn, elements(args)):
            self.release_slot()
            raise DeadlineExceeded
        started = time.perf_counter()
        ticket.started = ticket.started or time.monotonic()
        future = self.start(fn, *args)
        done, _ = await asyncio.wait({future}, timeout=max(ticket.remaining(), 0))
        if not done:
            raise DeadlineExceeded
        ticket.inference_s = time.perf_counter() - started
        return future.result()

    async def run_batch(
        self,
        ticket: Ticket,
        fn: Callable[[np.ndarray], np.ndarray],
        batch: np.ndarray,
        key: Hashable,
        client_gone: Awaitable[object] | None = None,
    ) -> np.ndarray:
        """Run ``fn(batch)``, sharing the forward with waiting requests of the same ``key`` when batching is on.

        ``key`` must identify the model and the input shape; requests with equal
        keys are concatenated along the batch axis.
        """
        if self._batcher is None:
            return await self.run(ticket, fn, batch, client_gone=client_gone)
        return await self._batcher.run(ticket, fn, batch, key, client_gone)

    async def run_background(self, fn: Callable[..., T], *args: object) -> T:
        """A job's forward: it takes a slot only while no interactive request is waiting for one.

        Interactive requests come first. A job asks again after every forward,
        so a request that arrives while a job runs waits at most for the one
        forward in progress. A job has no deadline and no client to lose.
        """
        while True:
            await self._idle.wait()
            await self._slots.acquire()
            if not self.waiting:
                break
            self._slots.release()  # a request arrived while this one waited: it goes first
            self._idle.clear()
        self.background += 1
        self._background_end = time.monotonic() + self.speed.expected_s(fn, elements(args))
        future = self.start(fn, *args)
        future.add_done_callback(self._background_done)
        return await asyncio.shield(future)

    async def take_slot(self) -> None:
        """A slot with no deadline or disconnect watch: for a batch, whose members each watch their own."""
        await self._slots.acquire()

    def release_slot(self) -> None:
        self._slots.release()

    def start(self, fn: Callable[..., T], *args: object, count: int = 1) -> asyncio.Future[T]:
        """Run ``fn`` on the pool for ``count`` requests holding one slot; the slot returns when the thread is done."""
        self.running += count
        self._note_waiting()
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self.speed.timed, fn, *args)
        future.add_done_callback(lambda done: self._finished(done, count, time.perf_counter() - started))
        return future

    def shutdown(self) -> None:
        if self._batcher is not None:
            self._batcher.shutdown()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _leave(self, ticket: Ticket) -> None:
        self.admitted -= 1
        self._note_waiting()
        self._tickets.discard(ticket)
        if self.budget is not None and ticket.reserved:
            self.budget.release(ticket.reserved)
            ticket.reserved = 0

    def _finished(self, future: asyncio.Future[Any], count: int, seconds: float) -> None:
        if not future.cancelled() and future.exception() is None:  # retrieved: no "never retrieved" report
            each = seconds / count
            self.typical_s = each if not self.typical_s else 0.7 * self.typical_s + 0.3 * each
        self.running -= count
        self._slots.release()

    def _background_done(self, _: asyncio.Future[Any]) -> None:
        self.background -= 1
        self._note_waiting()

    def _note_waiting(self) -> None:
        """Let job forwards through when no interactive request waits."""
        if self.waiting <= 0:
            self._idle.set()
        else:
            self._idle.clear()

    async def _acquire(self, ticket: Ticket, client_gone: Awaitable[object] | None) -> None:
        acquire = asyncio.ensure_future(self._slots.acquire())
        try:
            left = await watch(acquire, ticket, client_gone)
        except BaseException:  # our own request was cancelled: never keep a permit
            if await _settle(acquire):
                self._slots.release()
            raise
        held = await _settle(acquire)
        if held and not left:
            return
        if held:
            self._slots.release()
        raise ClientGone if left else DeadlineExceeded


async def _settle(acquire: asyncio.Future[Literal[True]]) -> bool:
    """Cancel a pending acquire and report whether it ended holding a permit."""
    acquire.cancel()
    try:
        return bool(await acquire)
    except asyncio.CancelledError:
        return False
