"""/metrics exposes the listed series after traffic; one structured access line per request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from animegan_api.cli.logs import JsonFormatter
from animegan_api.config import Settings
from conftest import picture_bytes


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


async def test_metrics_show_the_listed_series_after_requests(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(rate_limit_enabled=True, rate_limit="3/minute", max_pixels=5000)) as client:
        assert (await client.post("/v1/transform", files={"image": ("p.png", picture_bytes())})).status_code == 200
        await client.post("/v1/transform", files={"image": ("x", b"junk")})
        await client.post("/v1/transform", files={"image": ("big.png", picture_bytes((100, 100)))})
        await client.get("/v1/styles")
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "animegan_http_requests_total", route="/v1/transform", status="200") == 1
    assert _value(text, "animegan_http_request_duration_seconds_count", route="/v1/transform") == 3
    assert _value(text, "animegan_queue_wait_seconds_count", style="random") == 1
    assert _value(text, "animegan_inference_seconds_count", style="random") == 1
    assert _value(text, "animegan_rejected_total", reason="unsupported_image") == 1
    assert _value(text, "animegan_rejected_total", reason="image_too_large") == 1
    assert _value(text, "animegan_rejected_total", reason="rate_limited") == 1
    assert _value(text, "animegan_model_load_seconds", style="random") > 0
    assert _value(text, "animegan_in_flight_requests") == 0
    assert _value(text, "animegan_queued_requests") == 0
    assert _value(text, "process_resident_memory_bytes") > 50e6


async def test_unknown_paths_do_not_make_new_label_values(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.get(f"/random/{i}")
    text = (await client.get("/metrics")).text
    assert _value(text, "animegan_http_requests_total", route="unmatched", status="404") == 3
    assert "/random/1" not in text


async def test_one_access_line_per_request_with_its_facts(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="animegan_api.access"):
        await client.post(
            "/v1/transform", files={"image": ("p.png", picture_bytes((70, 50)))}, headers={"x-request-id": "req-42"}
        )
    lines = [r for r in caplog.records if r.name == "animegan_api.access"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["request_id"] == "req-42" and fields["route"] == "/v1/transform" and fields["status"] == 200
    assert fields["style"] == "random" and fields["in_size"] == [70, 50] and fields["out_size"] == [68, 48]
    assert fields["inference_ms"] > 0 and fields["queue_ms"] >= 0 and fields["client"] == "127.0.0.1"
    assert fields["memory_bytes"] > 70 * 50 * 27  # the forward's reservation, beyond the pictures' own bytes
    line = json.loads(JsonFormatter().format(lines[0]))
    assert line["logger"] == "animegan_api.access" and line["request_id"] == "req-42" and line["level"] == "info"
