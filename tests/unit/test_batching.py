"""Micro-batching: who shares a forward, and how leaving a batch never stops the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded
from gates import Gate, until


async def _batched(
    engine: InferenceEngine, model: Gate, value: float, key: object = "k", gone: asyncio.Event | None = None
) -> object:
    try:
        with engine.admit() as ticket:
            output = await engine.run_batch(
                ticket, model, np.full((1, 2), value), key, client_gone=gone.wait() if gone else None
            )
            return float(output[0, 0])
    except (DeadlineExceeded, ClientGone, RuntimeError) as exc:
        return type(exc).__name__


async def _idle(engine: InferenceEngine) -> None:
    await until(lambda: engine.running == 0 and engine.admitted == 0)


@pytest.fixture
async def batching() -> AsyncIterator[InferenceEngine]:
    created = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=4)
    yield created
    created.shutdown()


async def test_requests_waiting_together_share_one_forward(batching: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.ensure_future(_batched(batching, gate, 1))
    await gate.started(1)  # the first runs alone; the next five wait for the slot
    rest = [asyncio.ensure_future(_batched(batching, gate, v)) for v in (2, 3, 4, 5, 6)]
    await until(lambda: batching.waiting == 5)
    gate.open()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8, 10, 12]  # each request gets its own slice back
    assert gate.batch_sizes == [1, 4, 1]
    await _idle(batching)


async def test_different_keys_never_share_a_forward(batching: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.ensure_future(_batched(batching, gate, 1, key="a"))
    await gate.started(1)
    others = [asyncio.ensure_future(_batched(batching, gate, v, key=k)) for v, k in ((2, "a"), (3, "b"), (4, "a"))]
    await until(lambda: batching.waiting == 3)
    gate.open()
    assert await asyncio.gather(first, *others) == [2, 4, 6, 8]
    assert sorted(gate.batch_sizes) == [1, 1, 2]


async def test_a_batch_holding_a_slot_waits_for_later_arrivals() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=2, max_batch_wait_ms=1000)
    gate = Gate()
    gate.open()
    first = asyncio.ensure_future(_batched(engine, gate, 1))
    await until(lambda: engine.admitted == 1)
    assert gate.inputs == []  # it has the slot, and waits for company
    second = asyncio.ensure_future(_batched(engine, gate, 2))
    assert await asyncio.gather(first, second) == [2, 4]
    assert gate.batch_sizes == [2]
    engine.shutdown()


async def test_a_member_that_leaves_does_not_stop_the_others(batching: InferenceEngine) -> None:
    gate = Gate()
    gone = asyncio.Event()
    first = asyncio.ensure_future(_batched(batching, gate, 1))
    await gate.started(1)
    leaving = asyncio.ensure_future(_batched(batching, gate, 2, gone=gone))
    staying = asyncio.ensure_future(_batched(batching, gate, 3))
    await until(lambda: batching.waiting == 2)
    gone.set()
    assert await leaving == "ClientGone"
    gate.open()
    assert await asyncio.gather(first, staying) == [2, 6]
    assert gate.batch_sizes == [1, 1]  # the leaver's picture was dropped before the forward
    await _idle(batching)


async def test_a_batch_whose_members_all_left_runs_nothing() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=0.3, max_batch=4)
    gate = Gate()
    first = asyncio.ensure_future(_batched(engine, gate, 1))
    await gate.started(1)
    results = await asyncio.gather(first, *(_batched(engine, gate, v) for v in (2, 3)))
    assert results == ["DeadlineExceeded"] * 3
    gate.open()  # the first forward ends; the waiting batch finds nobody left
    await _idle(engine)
    engine.timeout_s = 10
    assert await _batched(engine, gate, 4) == 8  # and the slot it took came back
    assert gate.batch_sizes == [1, 1]
    engine.shutdown()


async def test_a_failing_batch_fails_each_member_and_frees_the_slot(batching: InferenceEngine) -> None:
    gate = Gate(fail=True)
    gate.open()
    assert await asyncio.gather(*(_batched(batching, gate, v) for v in (1, 2, 3))) == ["RuntimeError"] * 3
    gate.fail = False
    assert await _batched(batching, gate, 5) == 10
    await _idle(batching)


async def test_batching_off_runs_each_request_alone() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=1)
    gate = Gate()
    gate.open()
    assert await asyncio.gather(*(_batched(engine, gate, v) for v in (1, 2, 3))) == [2, 4, 6]
    assert gate.batch_sizes == [1, 1, 1]
    engine.shutdown()


async def test_a_batch_drops_members_that_cannot_finish_in_time() -> None:
    engine = InferenceEngine(workers=1, max_queue=4, timeout_s=10, max_batch=4)
    gate = Gate()
    first = asyncio.ensure_future(_batched(engine, gate, 1))
    await gate.started(1)
    engine.timeout_s = 5
    late = asyncio.ensure_future(_batched(engine, gate, 2))
    await until(lambda: engine.waiting == 1)
    engine.speed.record(gate, 2, 30.0)  # one picture now takes 30 s: the late one has 5
    gate.open()
    assert await asyncio.gather(first, late) == [2, "DeadlineExceeded"]
    assert gate.batch_sizes == [1]
    await _idle(engine)
    engine.shutdown()
