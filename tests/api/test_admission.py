"""Admission over HTTP: the memory budget, deadlines, and the predicted turn that refuses at once with Retry-After."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from animegan_api.config import Settings
from conftest import AppClient, expect_error, picture_bytes, swap_predictor, upload
from gates import Gate, until


def _shrink_budget(client: AppClient, capacity: int) -> Any:
    """Leave requests ``capacity`` bytes above what is resident now (a test process holds far more than a pod)."""
    budget = client.app.state.services.engine.budget
    budget.total = budget.baseline + capacity
    return budget


async def test_a_picture_that_could_never_fit_is_413_naming_the_size_that_would(client: AppClient) -> None:
    loaded = client.app.state.services.registry.entries["random"].loaded
    assert loaded.cost is not None and loaded.cost.forward_bytes(128, 128) > 0  # known at load
    _shrink_budget(client, loaded.cost.forward_bytes(128, 128) + 2 * 1024 * 1024)
    photo = picture_bytes((400, 400))
    message = expect_error(
        await client.post("/v1/transform", files=upload(photo), data={"max_side": "400"}), 413, "too_large_for_memory"
    )
    side = int(message.rsplit(" ", 1)[1])
    assert 16 <= side < 400
    fits = await client.post("/v1/transform", files=upload(photo), data={"max_side": str(side)})
    assert fits.status_code == 200 and Image.open(io.BytesIO(fits.content)).size == (side, side)
    assert client.app.state.services.engine.budget.reserved == 0


async def test_a_request_that_fits_later_waits_for_bytes_then_runs(client: AppClient) -> None:
    loaded = client.app.state.services.registry.entries["random"].loaded
    photo = picture_bytes((64, 64))
    budget = _shrink_budget(client, loaded.cost.forward_bytes(64, 64) + 1024 * 1024)  # room for one at a time
    gate = Gate(output=np.zeros_like)
    swap_predictor(client, gate)
    first = asyncio.ensure_future(client.post("/v1/transform", files=upload(photo)))
    await gate.started(1)
    second = asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes((64, 64), color=(1, 2, 3)))))
    await until(lambda: budget.waiting == 1)
    limits = (await client.get("/v1/limits")).json()
    assert limits["memory_reserved_bytes"] > 0 and limits["memory_budget_bytes"] == budget.total
    assert len(gate.inputs) == 1  # the second waits for bytes, not yet for the model
    gate.open()
    assert [r.status_code for r in await asyncio.gather(first, second)] == [200, 200]
    assert budget.reserved == 0


async def test_waiting_for_bytes_ends_at_the_deadline(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    # 3 s: the first request must reach its forward inside it on a busy CI machine; the second waits it out
    async with make_client(settings_for(request_timeout_s=3.0)) as client:
        loaded = client.app.state.services.registry.entries["random"].loaded
        _shrink_budget(client, loaded.cost.forward_bytes(64, 64) + 1024 * 1024)
        gate = Gate(output=np.zeros_like)
        swap_predictor(client, gate)
        first = asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes((64, 64)))))
        started = asyncio.ensure_future(gate.started(1))
        await asyncio.wait({first, started}, return_when=asyncio.FIRST_COMPLETED)
        assert not first.done(), f"the first request ended before its forward: {first.result().text}"
        await started
        late = await client.post("/v1/transform", files=upload(picture_bytes((64, 64), color=(9, 9, 9))))
        expect_error(late, 504, "deadline_exceeded")
        gate.open()
        await first


async def test_a_forward_that_cannot_finish_by_the_deadline_is_413_at_once(client: AppClient) -> None:
    services = client.app.state.services
    predictor = services.registry.entries["random"].loaded.predictor
    services.engine.speed.record(predictor, 1, 1e-4)  # 0.1 ms per element: 1.2 s for 64x64, 75 s for 512x512
    photo = picture_bytes((512, 512))
    message = expect_error(await client.post("/v1/transform", files=upload(photo)), 413, "too_large_for_deadline")
    side = int(message.rsplit(" ", 1)[1])
    assert 16 <= side < 512 and 1e-4 * 3 * side * side <= 30


async def test_limits_report_the_budget_and_each_style(client: AppClient) -> None:
    limits = (await client.get("/v1/limits")).json()
    budget = client.app.state.services.engine.budget
    assert limits["memory_budget_bytes"] == budget.total and limits["memory_reserved_bytes"] == 0
    assert limits["memory_baseline_bytes"] == budget.baseline and limits["resident_bytes"] > 0
    (style,) = limits["styles"]
    assert style["name"] == "random" and style["memory_at_512_bytes"] > 0
    assert 16 <= style["largest_max_side"] <= limits["max_side_limit"]


async def test_the_budget_can_be_turned_off(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(memory_budget_mb=0)) as client:
        assert client.app.state.services.engine.budget is None
        assert client.app.state.services.registry.entries["random"].loaded.cost is None
        assert (await client.post("/v1/transform", files=upload(picture_bytes()))).status_code == 200
        limits = (await client.get("/v1/limits")).json()
        assert limits["memory_budget_bytes"] is None and limits["styles"][0]["largest_max_side"] is None


async def test_a_request_whose_turn_comes_too_late_is_refused_at_once_with_retry_after(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    """Predicted from the learned speed: 4 s a forward, 10 s deadline; the third in line would end at 12 s."""
    async with make_client(settings_for(request_timeout_s=10.0, max_queue=8)) as client:
        gate = Gate(output=np.zeros_like)
        swap_predictor(client, gate)
        for _ in range(20):  # a steady 3.99 s: its spread, which admission adds twice, shrinks to nothing
            client.app.state.services.engine.speed.record(gate, 3 * 64 * 64, 3.99)
        first = asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes((64, 64)))))
        await gate.started(1)
        second = asyncio.ensure_future(
            client.post("/v1/transform", files=upload(picture_bytes((64, 64), color=(5, 5, 5))))
        )
        await until(lambda: client.app.state.services.engine.backlog_s() > 7)
        third = await client.post("/v1/transform", files=upload(picture_bytes((64, 64), color=(6, 6, 6))))
        message = expect_error(third, 503, "overloaded")
        assert "turn would come in about" in message and third.headers["retry-after"] == "2"
        hurried = await client.post(
            "/v1/transform", files=upload(picture_bytes((64, 64), color=(7, 7, 7))), headers={"X-Request-Timeout": "9"}
        )
        expect_error(hurried, 503, "overloaded")  # 8 s ahead + 4 s of its own > 9 s
        assert hurried.headers["retry-after"] == "3"
        gate.open()
        assert [r.status_code for r in await asyncio.gather(first, second)] == [200, 200]  # no 504


async def test_a_short_client_deadline_refuses_a_forward_that_cannot_fit_it(client: AppClient) -> None:
    services = client.app.state.services
    services.engine.speed.record(services.registry.entries["random"].loaded.predictor, 3 * 64 * 64, 2.0)
    short = await client.post(
        "/v1/transform", files=upload(picture_bytes((64, 64))), headers={"X-Request-Timeout": "1"}
    )
    assert "longer than the 1 s deadline" in expect_error(short, 413, "too_large_for_deadline")


async def test_a_request_late_only_by_its_own_margin_is_let_through(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    """9 s on average, 10.8 s with the first spread, 10 s deadline, nothing ahead: not 'overloaded', it runs."""
    async with make_client(settings_for(request_timeout_s=10.0)) as client:
        gate = Gate(output=np.zeros_like)
        gate.open()
        swap_predictor(client, gate)
        client.app.state.services.engine.speed.record(gate, 3 * 64 * 64, 9.0)
        response = await client.post("/v1/transform", files=upload(picture_bytes((64, 64))))
        assert response.status_code == 200, response.text
