"""Admission control and the inference thread pool.

A request first takes a *place* (running or waiting) with :meth:`InferenceEngine.admit`;
when all ``workers + max_queue`` places are taken it is refused at once rather
than left to pile up. Holding a place, it may decode its upload, then waits on
an ``asyncio.Semaphore(workers)`` for a *slot* and runs the model on a
dedicated ``ThreadPoolExecutor``. A slot is handed back only when the model's
thread has really finished, so a request abandoned at its deadline can never
let more forwards run at once than there are workers.

With ``max_batch`` above 1, :meth:`InferenceEngine.run_batch` lets requests
for the same model and input shape that are waiting at the same time share
one forward: the first opens a batch, later ones join it until it is full or
a slot frees up (after at most ``max_batch_wait_ms`` more), and each gets its
own slice of the output.

The engine also learns each model's seconds per input element. A request
that reaches a slot with less time left than its forward needs is answered
504 at once instead of starting a forward whose result nobody would get:
under a backlog deeper than the deadline allows, the model's time goes to
requests that can still finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

T = TypeVar("T")
log = logging.getLogger(__name__)


class Overloaded(Exception):
    """Every running and waiting place is taken."""


class DeadlineExceeded(Exception):
    """The request's deadline passed while it waited or ran."""


class ClientGone(Exception):
    """The client went away before its request reached the model."""


@dataclass
class Ticket:
    """A request's place in the engine and its timings; leaving the ``with`` block gives the place back."""

    engine: InferenceEngine
    deadline: float
    queue_s: float = 0.0
    inference_s: float = 0.0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.admitted -= 1


@dataclass
class _Member:
    ticket: Ticket
    batch: np.ndarray
    result: asyncio.Future[np.ndarray]
    joined: float = field(default_factory=time.perf_counter)


@dataclass
class _Batch:
    """Requests for one model and input shape that will run as one forward."""

    fn: Callable[[np.ndarray], np.ndarray]
    members: list[_Member] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class InferenceEngine:
    """Bounded, deadline-aware access to a pool of inference threads."""

    def __init__(
        self,
        workers: int,
        max_queue: int,
        timeout_s: float,
        image_threads: int = 2,
        max_batch: int = 1,
        max_batch_wait_ms: float = 0.0,
        inference_nice: int = 0,
    ) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.max_batch_wait_s = max_batch_wait_ms / 1000
        self.admitted = 0
        self.running = 0
        self._open: dict[Hashable, _Batch] = {}
        self._rates: weakref.WeakKeyDictionary[Callable[..., object], float] = weakref.WeakKeyDictionary()
        self._dispatchers: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="animegan-infer", initializer=_lower_priority, initargs=(inference_nice,)
        )
        # Decode and encode get their own few threads: off the event loop, out of the model's
        # threads, and few enough that a burst neither oversubscribes the cores nor fans out
        # into dozens of malloc arenas holding large pictures.
        self._images = ThreadPoolExecutor(max_workers=image_threads, thread_name_prefix="animegan-image")

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def admit(self) -> Ticket:
        """Take a place or raise :class:`Overloaded` at once; use the ticket in a ``with`` block."""
        if self.admitted >= self.workers + self.max_queue:
            raise Overloaded
        self.admitted += 1
        return Ticket(self, deadline=time.monotonic() + self.timeout_s)

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
        if ticket.remaining() < self.expected_s(fn, _elements(args)):
            self._slots.release()
            raise DeadlineExceeded
        self.running += 1
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, *args)
        future.add_done_callback(self._release)
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
        if self.max_batch <= 1:
            return await self.run(ticket, fn, batch, client_gone=client_gone)
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

    def expected_s(self, fn: Callable[..., object], elements: int) -> float:
        """Seconds ``fn`` is expected to take on inputs of ``elements`` elements (0 until it has run)."""
        try:
            return self._rates.get(fn, 0.0) * elements
        except TypeError:  # not weakly referenceable: never learned
            return 0.0

    def _timed(self, fn: Callable[..., T], *args: object) -> T:
        """Run in the pool and learn fn's seconds per element from each success."""
        started = time.perf_counter()
        result = fn(*args)
        elements = _elements(args)
        if elements:
            rate = (time.perf_counter() - started) / elements
            with contextlib.suppress(TypeError):
                previous = self._rates.get(fn)
                self._rates[fn] = rate if previous is None else 0.7 * previous + 0.3 * rate
        return result

    async def run_image_work(self, fn: Callable[..., T], *args: object) -> T:
        """Decode, resize or encode on the image pool."""
        return await asyncio.get_running_loop().run_in_executor(self._images, fn, *args)

    def shutdown(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._images.shutdown(wait=True, cancel_futures=True)

    def _release(self, future: asyncio.Future[object], count: int = 1) -> None:
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not reported as unhandled
        self.running -= count
        self._slots.release()

    def _close(self, key: Hashable, group: _Batch) -> None:
        if self._open.get(key) is group:
            del self._open[key]
        group.full.set()

    async def _dispatch(self, key: Hashable, group: _Batch) -> None:
        """Take a slot for the batch, let it fill a little longer, then run it once for every member still waiting."""
        await self._slots.acquire()
        try:
            if self.max_batch_wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.full.wait(), self.max_batch_wait_s)
            self._close(key, group)
            live = self._still_possible(group)
        except BaseException:
            self._slots.release()
            raise
        if not live:  # everyone left while the batch waited: no forward
            self._slots.release()
            return
        await self._forward(group.fn, live)

    def _still_possible(self, group: _Batch) -> list[_Member]:
        """Members still waiting whose deadline leaves time for the forward; the others get 504 now."""
        waiting = [m for m in group.members if not m.result.done()]
        needed = self.expected_s(group.fn, sum(m.batch.size for m in waiting))
        for member in waiting:
            if member.ticket.remaining() < needed:
                _settle_result(member.result, exception=DeadlineExceeded())
        return [m for m in waiting if not m.result.done()]

    async def _forward(self, fn: Callable[[np.ndarray], np.ndarray], live: list[_Member]) -> None:
        started = time.perf_counter()
        for member in live:
            member.ticket.queue_s = started - member.joined
        self.running += len(live)
        inputs = live[0].batch if len(live) == 1 else np.concatenate([m.batch for m in live])
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, inputs)
        future.add_done_callback(lambda done: self._release(done, len(live)))
        try:
            output = await asyncio.shield(future)
        except asyncio.CancelledError:  # shutting down: the members end with a deadline error
            for member in live:
                member.result.cancel()
            raise
        except Exception as exc:
            for member in live:
                _settle_result(member.result, exception=exc)
            return
        elapsed, offset = time.perf_counter() - started, 0
        for member in live:
            member.ticket.inference_s = elapsed
            count = member.batch.shape[0]
            _settle_result(member.result, output[offset : offset + count])
            offset += count

    async def _result(self, member: _Member, client_gone: Awaitable[object] | None) -> np.ndarray:
        """Wait for this member's slice; leaving (deadline, disconnect, cancellation) only abandons the slice."""
        gone = asyncio.ensure_future(client_gone) if client_gone is not None else None
        watched = {member.result} if gone is None else {member.result, gone}
        try:
            await asyncio.wait(watched, timeout=max(member.ticket.remaining(), 0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            _cancel(gone)
            if not member.result.done():
                member.result.cancel()
        if not member.result.cancelled():
            return member.result.result()
        raise ClientGone if _completed(gone) else DeadlineExceeded

    async def _acquire(self, ticket: Ticket, client_gone: Awaitable[object] | None) -> None:
        acquire = asyncio.ensure_future(self._slots.acquire())
        gone = asyncio.ensure_future(client_gone) if client_gone is not None else None
        watched = {acquire} if gone is None else {acquire, gone}
        try:
            await asyncio.wait(watched, timeout=max(ticket.remaining(), 0), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # our own request was cancelled: never keep a permit
            _cancel(gone)
            if await _settle(acquire):
                self._slots.release()
            raise
        _cancel(gone)
        held = await _settle(acquire)
        left = _completed(gone)
        if held and not left:
            return
        if held:
            self._slots.release()
        raise ClientGone if left else DeadlineExceeded


def _lower_priority(increment: int) -> None:
    """Raise this inference thread's nice value; the OpenMP threads it starts inherit it.

    The forward keeps every core busy. At equal priority the event loop waits
    for the scheduler behind it, and so does every refusal, health check and
    decode; niced, the model yields the moment they have work and gets the
    cores back when they are done.
    """
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + increment)
    except OSError as exc:
        log.warning("could not lower the inference thread's priority: %s", exc)


def _elements(args: tuple[object, ...]) -> int:
    """Input size the forward's cost scales with: the elements of the array arguments."""
    return sum(a.size for a in args if isinstance(a, np.ndarray))


def _settle_result(result: asyncio.Future[np.ndarray], value: np.ndarray | None = None, exception: Exception | None = None) -> None:
    if result.done():  # its request already left
        return
    if exception is not None:
        result.set_exception(exception)
    else:
        result.set_result(value)


def _cancel(task: asyncio.Future[object] | None) -> None:
    if task is not None and not task.done():
        task.cancel()


def _completed(task: asyncio.Future[object] | None) -> bool:
    return task is not None and task.done() and not task.cancelled() and task.exception() is None


async def _settle(acquire: asyncio.Future[bool]) -> bool:
    """Cancel a pending acquire and report whether it ended holding a permit."""
    acquire.cancel()
    try:
        return bool(await acquire)
    except asyncio.CancelledError:
        return False
