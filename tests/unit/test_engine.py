"""Admission, slots and deadlines, ordered by gates the test opens rather than by sleeps."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.tickets import ClientGone, DeadlineExceeded, Overloaded
from gates import Gate, until


async def _request(
    engine: InferenceEngine, model: object, value: object = 1, gone: asyncio.Event | None = None
) -> object:
    with engine.admit() as ticket:
        return await engine.run(ticket, model, value, client_gone=gone.wait() if gone else None)  # type: ignore[arg-type]


async def _idle(engine: InferenceEngine) -> None:
    await until(lambda: engine.running == 0 and engine.admitted == 0)


@pytest.fixture
async def engine() -> AsyncIterator[InferenceEngine]:
    created = InferenceEngine(workers=1, max_queue=2, timeout_s=10)
    yield created
    created.shutdown()


async def test_three_places_then_refusal_without_waiting(engine: InferenceEngine) -> None:
    gate = Gate()
    admitted = [asyncio.create_task(_request(engine, gate, i)) for i in range(3)]
    await gate.started(1)
    await until(lambda: engine.waiting == 2)
    assert engine.full
    with pytest.raises(Overloaded):  # raised by a plain call: no await, so nothing to wait for
        engine.admit()
    gate.open()
    assert await asyncio.gather(*admitted) == [0, 2, 4]
    assert gate.max_running == 1
    await _idle(engine)
    assert not engine.full


async def test_workers_run_in_parallel_up_to_the_bound() -> None:
    engine = InferenceEngine(workers=2, max_queue=10, timeout_s=10)
    gate = Gate()
    requests = [asyncio.create_task(_request(engine, gate)) for _ in range(6)]
    await gate.started(2)
    await until(lambda: engine.waiting == 4)
    assert engine.running == 2 and gate.running == 2
    gate.open()
    assert await asyncio.gather(*requests) == [2] * 6
    assert gate.max_running == 2
    engine.shutdown()


async def test_deadline_while_queued_never_runs_the_model(engine: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(_request(engine, gate, 1))
    await gate.started(1)
    engine.timeout_s = 0.2  # only the second request gets the short deadline
    with pytest.raises(DeadlineExceeded):
        await _request(engine, gate, 2)
    assert gate.inputs == [1]
    gate.open()
    assert await first == 2
    await _idle(engine)


async def test_deadline_while_running_keeps_the_slot_until_the_thread_ends(engine: InferenceEngine) -> None:
    gate = Gate()
    engine.timeout_s = 0.2
    with pytest.raises(DeadlineExceeded):
        await _request(engine, gate)
    assert engine.running == 1 and engine.admitted == 0  # the place is back, the thread still holds the slot
    gate.open()
    await _idle(engine)
    engine.timeout_s = 10
    assert await _request(engine, gate, 4) == 8


async def test_disconnected_waiting_request_never_reaches_the_model(engine: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(_request(engine, gate, 1))
    await gate.started(1)
    gone = asyncio.Event()
    waiting = asyncio.create_task(_request(engine, gate, 2, gone))
    await until(lambda: engine.waiting == 1)
    gone.set()
    with pytest.raises(ClientGone):
        await waiting
    gate.open()
    assert await first == 2
    assert gate.inputs == [1]
    await _idle(engine)
    assert await _request(engine, gate, 3) == 6  # the permit came back


async def test_cancelled_waiting_request_leaks_no_permit(engine: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(_request(engine, gate))
    await gate.started(1)
    waiting = asyncio.create_task(_request(engine, gate))
    await until(lambda: engine.waiting == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.open()
    await first
    await _idle(engine)
    assert await asyncio.gather(*(_request(engine, gate) for _ in range(3))) == [2, 2, 2]
    assert gate.max_running == 1


async def test_model_failure_reaches_the_caller_and_frees_the_slot(engine: InferenceEngine) -> None:
    failing = Gate(fail=True)
    failing.open()
    with pytest.raises(RuntimeError, match="exploded"):
        await _request(engine, failing)
    await _idle(engine)
    working = Gate()
    working.open()
    assert await _request(engine, working, 5) == 10


async def test_ticket_records_queue_and_inference_time(engine: InferenceEngine) -> None:
    def nap(seconds: float) -> float:
        threading.Event().wait(seconds)
        return seconds

    with engine.admit() as first, engine.admit() as second:
        await asyncio.gather(engine.run(first, nap, 0.1), engine.run(second, nap, 0.1))
    # Lower bounds only: a wait can overrun on a busy machine, never undershoot.
    assert first.inference_s >= 0.1 and second.inference_s >= 0.1
    assert second.queue_s >= 0.1  # it waited for the first's forward


async def test_a_request_that_cannot_finish_in_time_never_starts(engine: InferenceEngine) -> None:
    gate = Gate()
    gate.open()
    batch = np.ones((1, 2))
    engine.speed.record(gate, batch.size, 60.0)  # as if this model had taken a minute
    with pytest.raises(DeadlineExceeded):
        await _request(engine, gate, batch)
    assert gate.inputs == []  # refused on reaching the slot, not after a wasted forward
    await _idle(engine)


async def test_inference_threads_run_at_a_lower_priority() -> None:
    engine = InferenceEngine(workers=1, max_queue=0, timeout_s=5, inference_nice=5)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def own_nice(_: object) -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    with engine.admit() as ticket:
        assert await engine.run(ticket, own_nice, None) == min(19, base + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the event loop keeps its own
    engine.shutdown()


async def test_a_client_deadline_is_capped_by_the_engine_s(engine: InferenceEngine) -> None:
    with engine.admit(2.5) as short, engine.admit(99) as long:
        assert (short.timeout_s, long.timeout_s) == (2.5, 10)
        assert 2 < short.remaining() <= 2.5 and 9 < long.remaining() <= 10


async def test_backlog_is_the_predicted_work_left_per_worker() -> None:
    engine = InferenceEngine(workers=2, max_queue=4, timeout_s=10)
    with engine.admit() as running, engine.admit() as waiting, engine.admit() as asking:
        running.predicted_s, waiting.predicted_s, asking.predicted_s = 3.0, 2.0, 7.0
        running.started = time.monotonic() - 1.0  # one of its three seconds done
        assert engine.backlog_s(besides=asking) == pytest.approx((2.0 + 2.0) / 2, abs=0.05)
        assert running.left_to_run(running.started + 9) == 0  # slower than predicted: nothing more counted
        assert waiting.left_to_run(time.monotonic() + 100) == 2.0  # not started: all of it
    assert engine.backlog_s() == 0  # given back: no longer ahead of anyone
    engine.shutdown()


async def test_a_new_ticket_counts_a_typical_forward_before_it_is_sized(engine: InferenceEngine) -> None:
    gate = Gate()
    running = asyncio.ensure_future(_request(engine, gate, np.ones(4)))
    await gate.started(1)
    with engine.admit() as early:
        assert early.predicted_s == 0  # nothing has finished yet
    gate.open()
    await running
    with engine.admit() as later:
        assert later.predicted_s == engine.typical_s > 0
        assert engine.backlog_s() == pytest.approx(later.predicted_s)  # a burst's members see each other


async def test_a_job_forward_waits_while_an_interactive_request_waits(engine: InferenceEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(engine.run_background(gate, "job-1"))
    await gate.started(1)
    assert engine.admitted == 0 and engine.waiting == 0  # jobs hold no request place: a drain never waits on them
    request = asyncio.create_task(_request(engine, gate, "request"))
    await until(lambda: engine.waiting == 1)
    second = asyncio.create_task(engine.run_background(gate, "job-2"))
    gate.open()
    await asyncio.gather(first, request, second)
    assert gate.inputs == ["job-1", "request", "job-2"]  # the request waited for one forward, no more
    await _idle(engine)
    assert engine.background == 0


async def test_a_running_job_forward_counts_in_the_predicted_wait(engine: InferenceEngine) -> None:
    gate = Gate()
    engine.speed.seed(gate, 1, 4.0)
    job = asyncio.create_task(engine.run_background(gate, np.ones(1)))
    await gate.started(1)
    assert 3.0 < engine.backlog_s() <= 4.0
    gate.open()
    await job
