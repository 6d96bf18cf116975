"""The memory budget: its default, the reservations admission makes in it, and measuring a style's need."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from animegan_api.runtime import memory
from animegan_api.runtime.memory import LinearCost, MiB, SplitCost, calibrate, calibrated_pixels, default_budget
from animegan_api.runtime.model import Generator
from animegan_api.runtime.predictors import TorchPredictor
from animegan_api.serving.budget import Budget
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Ticket
from gates import until


def _ticket(seconds: float = 10.0) -> Ticket:
    return Ticket(time.monotonic() + seconds, lambda ticket: None)


def test_the_default_budget_leaves_headroom_under_a_container_limit() -> None:
    assert default_budget(3 * 1024 * MiB) == 3 * 1024 * MiB - int(3 * 1024 * MiB * 0.10)
    assert default_budget(1024 * MiB) == 768 * MiB  # 256 MiB of headroom is the least
    assert default_budget(None, physical=16 * 1024 * MiB) == 12 * 1024 * MiB


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("max\n", None, None),
        ("3221225472\n", None, 3221225472),
        (None, "9223372036854771712", None),
        (None, "2147483648", 2147483648),
        (None, None, None),
    ],
)
def test_the_container_limit_is_read_from_cgroup_v2_then_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v2: str | None, v1: str | None, expected: int | None
) -> None:
    files = (tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes")
    for path, text in zip(files, (v2, v1), strict=True):
        if text is not None:
            path.write_text(text)
    monkeypatch.setattr(memory, "_CGROUP_FILES", files)
    assert memory.container_limit() == expected


def test_a_forward_is_measured_at_two_sizes() -> None:
    torch.manual_seed(0)
    cost = calibrate(TorchPredictor(Generator().eval()), multiple=4)
    assert cost is not None
    assert cost.per_pixel > 100  # at least the float32 activations of a few channels
    assert cost.forward_bytes(512, 512) > cost.forward_bytes(256, 256) > 0


def test_a_split_cost_uses_each_line_on_its_side_and_never_falls_past_the_split() -> None:
    cost = SplitCost(small=LinearCost(0, 10.0), large=LinearCost(0, 4.0), pixels=100)
    assert cost.forward_bytes(10, 10) == 1000  # the small line up to the split
    assert cost.forward_bytes(11, 10) == 1000  # the large line (440) would fall below it
    assert cost.forward_bytes(30, 30) == 3600
    assert calibrated_pixels(256) == 512 * 512 and calibrated_pixels(16) == 128 * 128


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


def test_freed_memory_can_be_handed_back() -> None:
    memory.give_back()  # glibc's malloc_trim where present; a no-op elsewhere
    assert memory.resident_bytes() > 0


def test_a_measured_cost_is_a_line_in_pixels() -> None:
    assert LinearCost(fixed=100, per_pixel=2.0).forward_bytes(10, 5) == 200
