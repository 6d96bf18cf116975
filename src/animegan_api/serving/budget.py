"""The memory budget: bytes reserved by admitted requests, against what the process may use.

Admission counts bytes as well as places. The budget defaults to the
container's memory limit less headroom (:func:`runtime.memory.default_budget`);
what is resident when serving starts (the loaded models) is counted once as
the baseline, and each request reserves its predicted working memory before
it decodes. A request that could never fit is refused at once; one that fits
later waits in the queue for bytes as it would for a slot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket, watch

__all__ = ["Budget"]


class Budget:
    """Bytes reserved by admitted requests, against the budget less what was resident when serving began.

    Waiters are served in order of arrival: a large request is not starved by
    a stream of small ones behind it.
    """

    def __init__(self, total: int, baseline: int) -> None:
        self.total = total
        self.baseline = baseline
        self.reserved = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def capacity(self) -> int:
        """What requests may reserve in all: the budget less the resident baseline."""
        return max(0, self.total - self.baseline)

    @property
    def available(self) -> int:
        return self.capacity - self.reserved

    @property
    def waiting(self) -> int:
        """Requests waiting for bytes now."""
        return sum(1 for _, granted in self._waiters if not granted.done())

    def fits(self, nbytes: int) -> bool:
        """Whether a request of ``nbytes`` could ever be admitted, with nothing else running."""
        return nbytes <= self.capacity

    async def reserve(
        self, nbytes: int, ticket: Ticket, client_gone: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Hold ``nbytes`` for the ticket, waiting (until its deadline) behind earlier waiters for them.

        ``client_gone`` makes the awaitable that completes when the client leaves; it is called only to wait.
        """
        if not self._waiters and nbytes <= self.available:
            self._take(ticket, nbytes)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((nbytes, granted))
        try:
            left = await watch(granted, ticket, client_gone() if client_gone else None)
        except BaseException:  # our request was cancelled: keep nothing
            self._abandon(granted, nbytes)
            raise
        self._abandon(granted, nbytes, keep=True)
        if granted.cancelled():
            raise ClientGone if left else DeadlineExceeded
        ticket.reserved += nbytes

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes
        self._wake()

    def _abandon(self, granted: asyncio.Future[None], nbytes: int, keep: bool = False) -> None:
        """Stop waiting; a grant that came too late is given back unless ``keep``."""
        if not granted.done():
            granted.cancel()
            self._wake()  # a waiter at the head that leaves must not block the ones behind it
        elif not keep and not granted.cancelled():
            self.release(nbytes)

    def _take(self, ticket: Ticket, nbytes: int) -> None:
        self.reserved += nbytes
        ticket.reserved += nbytes

    def _wake(self) -> None:
        while self._waiters and (self._waiters[0][1].done() or self._waiters[0][0] <= self.available):
            nbytes, granted = self._waiters.popleft()
            if not granted.done():
                self.reserved += nbytes
                granted.set_result(None)
