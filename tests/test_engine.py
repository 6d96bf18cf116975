from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest

from animegan_api.engine import ClientGone, DeadlineExceeded, InferenceEngine, Overloaded


class Model:
    """Stands in for a generator: sleeps, counts calls, can fail."""

    def __init__(self, seconds: float = 0.3, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def __call__(self, value: int) -> int:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            time.sleep(self.seconds)
            if self.fail:
                raise RuntimeError("model exploded")
            return value * 2
        finally:
            with self._lock:
                self.concurrent -= 1


async def _request(engine: InferenceEngine, model: Model, value: int = 1, gone: asyncio.Event | None = None) -> int | str:
    try:
        with engine.admit() as ticket:
            return await engine.run(ticket, model, value, client_gone=gone.wait() if gone else None)
    except Overloaded:
        return "overloaded"


async def _settled(engine: InferenceEngine, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.running or engine.admitted:
        assert time.monotonic() < deadline, "engine did not return to idle"
        await asyncio.sleep(0.01)


@pytest.fixture
async def engine() -> InferenceEngine:
    created = InferenceEngine(workers=1, max_queue=2, timeout_s=10)
    yield created
    created.shutdown()


async def test_six_simultaneous_requests_three_run_three_refused(engine: InferenceEngine) -> None:
    model = Model(0.2)
    results = await asyncio.gather(*(_request(engine, model, i) for i in range(6)))
    assert sorted(map(str, results)) == ["0", "2", "4", "overloaded", "overloaded", "overloaded"]
    assert model.calls == 3 and model.max_concurrent == 1
    await _settled(engine)


async def test_refusal_is_immediate(engine: InferenceEngine) -> None:
    model = Model(0.5)
    busy = [asyncio.create_task(_request(engine, model)) for _ in range(3)]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    assert await _request(engine, model) == "overloaded"
    assert time.perf_counter() - started < 0.05
    await asyncio.gather(*busy)


async def test_workers_run_in_parallel_up_to_the_bound() -> None:
    engine = InferenceEngine(workers=2, max_queue=10, timeout_s=10)
    model = Model(0.2)
    await asyncio.gather(*(_request(engine, model) for _ in range(6)))
    assert model.max_concurrent == 2
    engine.shutdown()


async def test_deadline_while_queued_never_runs_the_model() -> None:
    engine = InferenceEngine(workers=1, max_queue=2, timeout_s=0.3)
    model = Model(0.6)
    first = asyncio.create_task(_request(engine, model))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded):
        await _request(engine, model)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(DeadlineExceeded):
        await first  # the running one also outlives its 0.3 s deadline
    assert model.calls == 1
    await _settled(engine)
    engine.shutdown()


async def test_deadline_while_running_keeps_the_slot_until_the_thread_ends() -> None:
    engine = InferenceEngine(workers=1, max_queue=2, timeout_s=0.2)
    model = Model(0.5)
    with pytest.raises(DeadlineExceeded):
        await _request(engine, model)
    assert engine.running == 1  # the thread is still busy: no second forward may start yet
    await _settled(engine)
    engine.timeout_s = 5
    assert await _request(engine, model, 4) == 8
    engine.shutdown()


async def test_disconnected_waiting_request_never_reaches_the_model(engine: InferenceEngine) -> None:
    model = Model(0.4)
    first = asyncio.create_task(_request(engine, model, 1))
    await asyncio.sleep(0.05)
    gone = asyncio.Event()
    waiting = asyncio.create_task(_request(engine, model, 2, gone))
    await asyncio.sleep(0.05)
    gone.set()
    with pytest.raises(ClientGone):
        await waiting
    assert await first == 2
    assert model.calls == 1
    await _settled(engine)
    assert await _request(engine, model, 3) == 6  # the permit came back


async def test_cancelled_waiting_request_leaks_no_permit(engine: InferenceEngine) -> None:
    model = Model(0.3)
    first = asyncio.create_task(_request(engine, model))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(_request(engine, model))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await first
    await _settled(engine)
    results = await asyncio.gather(*(_request(engine, model) for _ in range(3)))
    assert results == [2, 2, 2]
    assert model.max_concurrent == 1


async def test_model_failure_reaches_the_caller_and_frees_the_slot(engine: InferenceEngine) -> None:
    failing = Model(0.01, fail=True)
    with pytest.raises(RuntimeError, match="exploded"):
        await _request(engine, failing)
    await _settled(engine)
    assert await _request(engine, Model(0.01), 5) == 10


async def test_ticket_records_queue_and_inference_time(engine: InferenceEngine) -> None:
    model = Model(0.2)
    with engine.admit() as ticket:
        await engine.run(ticket, model, 1)
    assert ticket.inference_s >= 0.19
    assert ticket.queue_s < 0.1


class BatchModel:
    """Records the batch sizes it is called with; output = input * 2."""

    def __init__(self, seconds: float = 0.2, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.batch_sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(batch.shape[0])
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("model exploded")
        return batch * 2


async def _batched(engine: InferenceEngine, model: BatchModel, value: float, key: object = "k", gone: asyncio.Event | None = None) -> object:
    try:
        with engine.admit() as ticket:
            output = await engine.run_batch(ticket, model, np.full((1, 2), value), key, client_gone=gone.wait() if gone else None)
            return float(output[0, 0])
    except (DeadlineExceeded, ClientGone, RuntimeError) as exc:
        return type(exc).__name__


@pytest.fixture
async def batching() -> InferenceEngine:
    created = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=4)
    yield created
    created.shutdown()


async def test_requests_waiting_together_share_one_forward(batching: InferenceEngine) -> None:
    model = BatchModel()
    first = asyncio.ensure_future(_batched(batching, model, 1))
    await asyncio.sleep(0.05)  # the first runs alone; the next five wait for the slot
    rest = [asyncio.ensure_future(_batched(batching, model, v)) for v in (2, 3, 4, 5, 6)]
    results = await asyncio.gather(first, *rest)
    assert results == [2, 4, 6, 8, 10, 12]  # each request gets its own slice back
    assert model.batch_sizes == [1, 4, 1]
    await _settled(batching)


async def test_different_keys_never_share_a_forward(batching: InferenceEngine) -> None:
    model = BatchModel(0.1)
    first = asyncio.ensure_future(_batched(batching, model, 1, key="a"))
    await asyncio.sleep(0.03)
    others = [asyncio.ensure_future(_batched(batching, model, v, key=k)) for v, k in ((2, "a"), (3, "b"), (4, "a"))]
    assert await asyncio.gather(first, *others) == [2, 4, 6, 8]
    assert sorted(model.batch_sizes) == [1, 1, 2]


async def test_batch_wait_gathers_requests_arriving_close_together() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=4, max_batch_wait_ms=300)
    model = BatchModel(0.05)
    first = asyncio.ensure_future(_batched(engine, model, 1))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(_batched(engine, model, 2))
    assert await asyncio.gather(first, second) == [2, 4]
    assert model.batch_sizes == [2]
    engine.shutdown()


async def test_a_member_that_leaves_does_not_stop_the_others(batching: InferenceEngine) -> None:
    model = BatchModel(0.3)
    gone = asyncio.Event()
    first = asyncio.ensure_future(_batched(batching, model, 1))
    await asyncio.sleep(0.05)
    leaving = asyncio.ensure_future(_batched(batching, model, 2, gone=gone))
    staying = asyncio.ensure_future(_batched(batching, model, 3))
    await asyncio.sleep(0.05)
    gone.set()
    assert await asyncio.gather(first, leaving, staying) == [2, "ClientGone", 6]
    assert model.batch_sizes == [1, 1]  # the leaver's picture was dropped before the forward
    await _settled(batching)


async def test_a_batch_whose_members_all_left_runs_nothing() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=0.3, max_batch=4)
    model = BatchModel(0.6)
    first = asyncio.ensure_future(_batched(engine, model, 1))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(first, *(_batched(engine, model, v) for v in (2, 3)))
    assert results == ["DeadlineExceeded"] * 3
    await asyncio.sleep(0.7)  # the first forward ends; the waiting batch finds nobody left
    assert model.batch_sizes == [1]
    assert engine.running == 0 and engine._slots._value == 1
    engine.shutdown()


async def test_a_failing_batch_fails_each_member_and_frees_the_slot(batching: InferenceEngine) -> None:
    model = BatchModel(0.1, fail=True)
    results = await asyncio.gather(*(_batched(batching, model, v) for v in (1, 2, 3)))
    assert results == ["RuntimeError"] * 3
    model.fail = False
    assert await _batched(batching, model, 5) == 10
    await _settled(batching)


async def test_batching_off_runs_each_request_alone() -> None:
    engine = InferenceEngine(workers=1, max_queue=8, timeout_s=10, max_batch=1)
    model = BatchModel(0.05)
    assert await asyncio.gather(*(_batched(engine, model, v) for v in (1, 2, 3))) == [2, 4, 6]
    assert model.batch_sizes == [1, 1, 1]
    engine.shutdown()


async def test_a_request_that_cannot_finish_in_time_never_starts() -> None:
    engine = InferenceEngine(workers=1, max_queue=4, timeout_s=0.5)
    model = BatchModel(0.3)

    async def one() -> object:
        try:
            with engine.admit() as ticket:
                return float((await engine.run(ticket, model, np.ones((1, 2))))[0, 0])
        except DeadlineExceeded:
            return "DeadlineExceeded"

    assert await one() == 2.0  # the engine learns this model's speed
    assert engine.expected_s(model, 2) == pytest.approx(0.3, rel=0.5)
    started = time.perf_counter()
    assert await asyncio.gather(one(), one()) == [2.0, "DeadlineExceeded"]
    assert model.batch_sizes == [1, 1]  # the second reached the slot with 0.2 s left and was not run
    assert time.perf_counter() - started < 0.45  # answered when the slot came, not at its deadline
    await _settled(engine)
    engine.shutdown()


async def test_a_batch_drops_members_that_cannot_finish_in_time() -> None:
    engine = InferenceEngine(workers=1, max_queue=4, timeout_s=0.5, max_batch=4)
    model = BatchModel(0.3)
    assert await _batched(engine, model, 1) == 2
    first = asyncio.ensure_future(_batched(engine, model, 1))
    await asyncio.sleep(0.02)
    late = asyncio.ensure_future(_batched(engine, model, 2))
    assert await asyncio.gather(first, late) == [2, "DeadlineExceeded"]
    assert model.batch_sizes == [1, 1]
    await _settled(engine)
    engine.shutdown()


async def test_inference_threads_run_at_a_lower_priority() -> None:
    engine = InferenceEngine(workers=1, max_queue=0, timeout_s=5, inference_nice=5)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def own_nice(_: object) -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    with engine.admit() as ticket:
        assert await engine.run(ticket, own_nice, None) == min(19, base + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the event loop keeps its own
    engine.shutdown()
