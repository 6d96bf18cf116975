"""The memory budget: reservations that fit at once, wait their turn, or leave keeping nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from animegan_api.serving.budget import Budget
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket
from gates import until


def _ticket(seconds: float = 10.0) -> Ticket:
    return Ticket(time.monotonic() + seconds, lambda ticket: None)


async def test_reservations_fit_at_once_or_wait_their_turn() -> None:
    budget = Budget(total=1000, baseline=400)
    assert budget.capacity == 600 and budget.fits(600) and not budget.fits(601)
    first, second, third = _ticket(), _ticket(), _ticket()
    await budget.reserve(500, first)
    assert first.reserved == 500 and budget.available == 100
    waiting = asyncio.ensure_future(budget.reserve(300, second))
    behind = asyncio.ensure_future(budget.reserve(50, third))  # would fit now, but waits behind the earlier one
    await asyncio.sleep(0)
    assert not waiting.done() and not behind.done()
    budget.release(first.reserved)
    await asyncio.gather(waiting, behind)
    assert (second.reserved, third.reserved, budget.reserved) == (300, 50, 350)


async def test_a_wait_for_bytes_ends_at_the_deadline_and_keeps_nothing() -> None:
    budget = Budget(total=100, baseline=0)
    holder, late = _ticket(), _ticket(0.05)
    await budget.reserve(80, holder)
    with pytest.raises(DeadlineExceeded):
        await budget.reserve(50, late)
    assert late.reserved == 0 and budget.reserved == 80


async def test_a_waiter_that_leaves_does_not_block_the_ones_behind_it() -> None:
    budget = Budget(total=100, baseline=0)
    holder, leaving, behind = _ticket(), _ticket(), _ticket()
    await budget.reserve(60, holder)
    gone = asyncio.Event()
    first = asyncio.ensure_future(budget.reserve(90, leaving, gone.wait))
    second = asyncio.ensure_future(budget.reserve(30, behind))
    await asyncio.sleep(0)
    gone.set()
    with pytest.raises(ClientGone):
        await first
    await asyncio.wait_for(second, 1)
    assert behind.reserved == 30 and budget.reserved == 90


async def test_a_cancelled_waiter_leaks_no_bytes() -> None:
    budget = Budget(total=100, baseline=0)
    holder, cancelled = _ticket(), _ticket()
    await budget.reserve(100, holder)
    task = asyncio.ensure_future(budget.reserve(10, cancelled))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    budget.release(100)
    await until(lambda: budget.reserved == 0)
    assert cancelled.reserved == 0
