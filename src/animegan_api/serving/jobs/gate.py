"""A job's way through the service: the same engine, picture threads and memory budget as requests, at a lower rank.

Jobs have no deadline and no client waiting on the socket. They hold the
bytes their work needs for as long as it runs, and each forward enters the
engine only when no interactive request is waiting (see
:meth:`~animegan_api.serving.engine.InferenceEngine.run_background`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from animegan_api.failures import Refusal
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.admission import ImagePool
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.plans import Price
from animegan_api.serving.sizing import Need, plan_need
from animegan_api.serving.tickets import Ticket, TooLarge

__all__ = ["JobGate", "Stopped"]

T = TypeVar("T")
_NO_DEADLINE_S = 1e7  # a job waits for its bytes as long as it takes


class Stopped(Exception):
    """The job was canceled, or the service is shutting down: stop before the next frame or picture."""


class JobGate:
    """The :class:`~animegan_api.serving.runner.Gate` of a job's pictures and frames; ``close`` frees its bytes."""

    def __init__(self, engine: InferenceEngine, images: ImagePool, stop: Callable[[], str | None]) -> None:
        self.engine, self.images, self._stop = engine, images, stop
        self._ticket = Ticket(time.monotonic() + _NO_DEADLINE_S, lambda _: None, timeout_s=_NO_DEADLINE_S)
        self.inference_s = 0.0

    def check(self) -> None:
        """Raise :class:`Stopped` when the job should stop now."""
        if (reason := self._stop()) is not None:
            raise Stopped(reason)

    async def hold(self, need: Need, what: str) -> None:
        """Reserve ``need`` bytes of the budget (waiting for them), keeping any held before."""
        budget = self.engine.budget
        if budget is None or need.nbytes <= self._ticket.reserved:
            return
        extra = need.nbytes - self._ticket.reserved
        try:
            await self.engine.reserve(self._ticket, extra)
        except TooLarge:
            raise Refusal("too_large_for_memory", need.refusal(what, budget.capacity, "piece of work")) from None

    def release(self) -> None:
        """Give back every byte held (after each picture of a batch, and at the end of a job)."""
        if self.engine.budget is not None and self._ticket.reserved:
            self.engine.budget.release(self._ticket.reserved)
            self._ticket.reserved = 0

    async def admit(self, price: Price) -> float:
        self.check()
        await self.hold(plan_need(price), "this picture")
        return 0.0

    async def recount(self, price: Price) -> None:
        return None

    async def pictures(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.images.run(fn, *args)

    async def forward(self, style: LoadedStyle, batch: np.ndarray) -> np.ndarray:
        self.check()
        started = time.perf_counter()
        output = await self.engine.run_background(style.predictor, batch)
        self.inference_s += time.perf_counter() - started
        return output

    def timing(self) -> dict[str, float]:
        return {"inference": self.inference_s}
