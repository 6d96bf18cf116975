"""A request's place in the engine, its deadline, and the three ways waiting for the model ends.

Shared by the engine (slots) and the batcher (batch results): whatever a
request waits for, it stops at its deadline or when its client disconnects,
and says which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ClientGone", "DeadlineExceeded", "Overloaded", "Ticket", "TooLarge", "watch"]

T = TypeVar("T")


class Overloaded(Exception):
    """Every running and waiting place is taken."""


class DeadlineExceeded(Exception):
    """The request's deadline passed while it waited or ran."""


class ClientGone(Exception):
    """The client went away before its request reached the model."""


class TooLarge(Exception):
    """The request could never be served within the limits, whatever else is running."""


@dataclass(eq=False)  # a place is itself, not its values: the engine keeps tickets in a set
class Ticket:
    """A request's place and its timings; leaving the ``with`` block gives the place back."""

    deadline: float
    release: Callable[[Ticket], None] = field(repr=False)
    timeout_s: float = 0.0  # the whole time it was given, for messages and Retry-After
    queue_s: float = 0.0
    inference_s: float = 0.0
    reserved: int = 0  # bytes of the memory budget this request holds
    memory_bytes: int = 0  # bytes admission reserved for it, kept after they are given back (the access log)
    predicted_s: float = 0.0  # model seconds admission expects this request to take
    started: float | None = None  # when its (first) forward began, on the monotonic clock

    def left_to_run(self, now: float) -> float:
        """Predicted model seconds this request still needs."""
        return self.predicted_s if self.started is None else max(0.0, self.predicted_s - (now - self.started))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(self)


async def watch(future: asyncio.Future[T], ticket: Ticket, client_gone: Awaitable[object] | None) -> bool:
    """Wait until ``future`` is done, the client disconnects, or the ticket's deadline passes.

    Returns whether the client went; ``future`` may still be pending, and the
    caller decides what that means (a deadline, a permit to give back).
    """
    gone = asyncio.ensure_future(client_gone) if client_gone is not None else None
    watched: set[asyncio.Future[Any]] = {future} if gone is None else {future, gone}
    try:
        await asyncio.wait(watched, timeout=max(ticket.remaining(), 0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if gone is not None and not gone.done():
            gone.cancel()
    return gone is not None and gone.done() and not gone.cancelled() and gone.exception() is None
