"""Admission control and the inference thread pool.

A request first takes a *place* (running or waiting) with :meth:`InferenceEngine.admit`;
when all ``workers + max_queue`` places are taken it is refused at once rather
than left to pile up. Holding a place, it may decode its upload, then waits on
an ``asyncio.Semaphore(workers)`` for a *slot* and runs the model on a
dedicated ``ThreadPoolExecutor``. A slot is handed back only when the model's
thread has really finished, so a request abandoned at its deadline can never
let more forwards run at once than there are workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


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


class InferenceEngine:
    """Bounded, deadline-aware access to a pool of inference threads."""

    def __init__(self, workers: int, max_queue: int, timeout_s: float, image_threads: int = 2) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.admitted = 0
        self.running = 0
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="animegan-infer")
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
        self.running += 1
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(self._release)
        done, _ = await asyncio.wait({future}, timeout=max(ticket.remaining(), 0))
        if not done:
            raise DeadlineExceeded
        ticket.inference_s = time.perf_counter() - started
        return future.result()

    async def run_image_work(self, fn: Callable[..., T], *args: object) -> T:
        """Decode, resize or encode on the image pool."""
        return await asyncio.get_running_loop().run_in_executor(self._images, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._images.shutdown(wait=True, cancel_futures=True)

    def _release(self, future: asyncio.Future[object]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not reported as unhandled
        self.running -= 1
        self._slots.release()

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
