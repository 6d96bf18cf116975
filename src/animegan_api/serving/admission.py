"""The service's gate for one request: its plan priced and admitted, pictures on their threads, forwards on the engine.

Admission happens once, before any wait, for the whole plan: a plan that
could never finish before its deadline or fit the memory budget is refused
with the largest size that would; one whose turn would come too late (the
model time of every admitted request ahead of it, plus its own forwards) is
refused at once with ``Retry-After``; the rest reserve their bytes and go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from animegan_api.failures import Refusal
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.plans import Price
from animegan_api.serving.sizing import plan_need, time_limit_side
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket, TooLarge

__all__ = ["Admission", "ImagePool"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class ImagePool:
    """A few threads for decoding and encoding, apart from the event loop and the model's threads.

    Few enough that a burst neither oversubscribes the cores nor fans out into
    dozens of malloc arenas holding large pictures.
    """

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="animegan-image")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Admission:
    """One admitted request's way through the service (a :class:`~animegan_api.serving.runner.Gate`)."""

    def __init__(
        self,
        engine: InferenceEngine,
        images: ImagePool,
        metrics: Metrics,
        ticket: Ticket,
        client_gone: Callable[[], Awaitable[object]],
    ) -> None:
        self.engine, self.images, self.metrics = engine, images, metrics
        self.ticket, self.client_gone = ticket, client_gone
        self._waited = 0.0
        self._queue_s = 0.0
        self._inference_s = 0.0

    async def admit(self, price: Price) -> float:
        """Refuse what can never finish, fit, or get its turn in time; reserve its memory. Returns seconds waited."""
        for style, (width, height) in price.forwards:
            if style.warm_timing:  # a cold start's first burst is predicted too, not only what follows it
                self.engine.speed.seed(style.predictor, *style.warm_timing)
            rate = self.engine.speed.expected_s(style.predictor, 1)
            side = time_limit_side(rate, self.ticket.timeout_s, (width, height), style.size_multiple)
            if side is not None:
                message = f"{style.spec.name} would need longer than the {self.ticket.timeout_s:g} s deadline"
                raise Refusal(
                    "too_large_for_deadline", f"{message}; the largest {price.size_field} that finishes is {side}"
                )
        await self.recount(price)
        need = plan_need(price)
        started = time.perf_counter()
        try:
            await self.engine.reserve(self.ticket, need.nbytes, self.client_gone)
        except TooLarge:
            capacity = self.engine.budget.capacity if self.engine.budget else 0
            what = f"at {price.size_field} {price.side} this picture"
            raise Refusal("too_large_for_memory", need.refusal(what, capacity, "request", price.size_field)) from None
        except (DeadlineExceeded, ClientGone) as exc:
            raise self._waiting_error(exc) from None
        self._waited = time.perf_counter() - started
        return self._waited

    async def recount(self, price: Price) -> None:
        """503 now, with the predicted wait as Retry-After, when the work ahead would make these forwards late.

        A plan of several forwards (styles, faces) whose average model time alone outlasts the deadline is 413:
        it could never finish. One whose cautious estimate alone is over its deadline (the average fits) is let
        through: waiting would not help it, and the slot's own check still stops a hopeless forward.
        """
        speed, ticket = self.engine.speed, self.ticket
        self._check_whole(price)
        own = sum(speed.cautious_s(style.predictor, 3 * w * h) for style, (w, h) in price.forwards)
        ahead = self.engine.backlog_s(besides=ticket)
        ticket.predicted_s = own
        if own <= 0 or own > ticket.remaining() or ahead + own <= ticket.remaining():
            return
        retry = max(1, math.ceil(ahead + own - ticket.timeout_s))
        message = (
            f"the service is busy: this request's turn would come in about {ahead:.1f} s and its model time is "
            f"{own:.1f} s, past its {ticket.timeout_s:g} s deadline; retry in {retry} s"
        )
        raise Refusal("overloaded", message, {"Retry-After": str(retry)})

    def _check_whole(self, price: Price) -> None:
        """413 for forwards that together, at their average speed, outlast the whole deadline."""
        if len(price.forwards) < 2:
            return  # one forward: its size was checked against the deadline already
        speed, timeout = self.engine.speed, self.ticket.timeout_s
        needed = sum(speed.expected_s(style.predictor, 3 * w * h) for style, (w, h) in price.forwards)
        if needed > timeout:
            message = (
                f"its {len(price.forwards)} forwards need about {needed:.1f} s of model time, more than the "
                f"{timeout:g} s deadline; ask for fewer styles or faces, or a smaller {price.size_field}"
            )
            raise Refusal("too_large_for_deadline", message)

    async def pictures(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.images.run(fn, *args)

    async def forward(self, style: LoadedStyle, batch: np.ndarray) -> np.ndarray:
        ticket, key = self.ticket, (id(style.predictor), batch.shape[1:])
        try:
            output = await self.engine.run_batch(
                ticket, style.predictor, batch, key=key, client_gone=self.client_gone()
            )
        except (DeadlineExceeded, ClientGone) as exc:
            raise self._waiting_error(exc) from None
        except Exception as exc:
            log.exception("inference failed for style %s", style.spec.name)
            raise Refusal("inference_failed", f"the model failed on this picture ({type(exc).__name__})") from exc
        self._queue_s += ticket.queue_s
        self._inference_s += ticket.inference_s
        self.metrics.observe_inference(style.spec.name, ticket.queue_s, ticket.inference_s)
        return output

    def timing(self) -> dict[str, float]:
        return {"queue": self._waited + self._queue_s, "inference": self._inference_s}

    def _waiting_error(self, exc: Exception) -> Refusal:
        if isinstance(exc, ClientGone):
            log.info("client disconnected while queued; inference skipped")
            return Refusal("client_closed_request", "the client disconnected before inference")
        return Refusal("deadline_exceeded", f"no result within {self.ticket.timeout_s:g} s")
