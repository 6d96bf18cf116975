from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from animegan_api.config import Settings
from conftest import AppClient, picture_bytes, save_random_generator


def _files(data: bytes, name: str = "photo.png") -> dict[str, Any]:
    return {"image": (name, data, "application/octet-stream")}


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]["message"]


def _swap_predictor(client: AppClient, predictor: Callable[[np.ndarray], np.ndarray]) -> None:
    for entry in client.app.state.registry.entries.values():
        assert entry.loaded is not None
        entry.loaded = dataclasses.replace(entry.loaded, predictor=predictor)


def _slow(seconds: float) -> Callable[[np.ndarray], np.ndarray]:
    def predict(batch: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return np.zeros_like(batch)

    return predict


async def test_transform_returns_a_png_of_the_processed_size(client: AppClient) -> None:
    response = await client.post("/v1/transform", files=_files(picture_bytes((70, 50))))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-style"] == "random"
    timing = response.headers["server-timing"]
    assert [part.split(";")[0] for part in timing.split(", ")] == ["decode", "queue", "inference", "encode"]
    assert Image.open(io.BytesIO(response.content)).size == (68, 48)


@pytest.mark.parametrize(("fmt", "media"), [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
async def test_output_formats(client: AppClient, fmt: str, media: str) -> None:
    response = await client.post("/v1/transform", files=_files(picture_bytes()), data={"format": fmt, "quality": "70"})
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert Image.open(io.BytesIO(response.content)).format == fmt.upper()


async def test_max_side_and_keep_size(client: AppClient) -> None:
    data = picture_bytes((300, 150), "JPEG")
    small = await client.post("/v1/transform", files=_files(data), data={"max_side": "100"})
    assert Image.open(io.BytesIO(small.content)).size == (100, 48)
    kept = await client.post("/v1/transform", files=_files(data), data={"max_side": "100", "keep_size": "true"})
    assert Image.open(io.BytesIO(kept.content)).size == (300, 150)


async def test_alpha_channel_survives(client: AppClient) -> None:
    source = Image.new("RGBA", (32, 32), (200, 10, 10, 255))
    source.putalpha(Image.linear_gradient("L").resize((32, 32)))
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    response = await client.post("/v1/transform", files=_files(buffer.getvalue()))
    result = Image.open(io.BytesIO(response.content))
    assert result.mode == "RGBA"
    assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(source.getchannel("A")))


async def test_missing_image_field_is_a_validation_error(client: AppClient) -> None:
    response = await client.post("/v1/transform", files={"picture": ("a.png", picture_bytes(), "image/png")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]


@pytest.mark.parametrize(
    ("data", "field"),
    [({"quality": "0"}, "quality"), ({"quality": "101"}, "quality"), ({"max_side": "8"}, "max_side"),
     ({"max_side": "4096"}, "max_side"), ({"max_side": "abc"}, "max_side"), ({"format": "gif"}, "format")],
)
async def test_bad_parameters_are_validation_errors(client: AppClient, data: dict[str, str], field: str) -> None:
    response = await client.post("/v1/transform", files=_files(picture_bytes()), data=data)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_unsupported_upload_is_415(client: AppClient) -> None:
    message = _error(await client.post("/v1/transform", files=_files(b"<html>hi</html>", "photo.jpg")), 415, "unsupported_image")
    assert "JPEG" in message


async def test_format_comes_from_the_bytes_not_the_name(client: AppClient) -> None:
    response = await client.post("/v1/transform", files=_files(picture_bytes(fmt="JPEG"), "looks_like.gif"))
    assert response.status_code == 200


async def test_corrupt_upload_is_400(client: AppClient) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    _error(await client.post("/v1/transform", files=_files(buffer.getvalue()[:1500])), 400, "corrupt_image")


async def test_too_many_pixels_is_413(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(max_pixels=1000)) as client:
        _error(await client.post("/v1/transform", files=_files(picture_bytes((100, 100)))), 413, "image_too_large")


async def test_upload_over_the_limit_is_413(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    big = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")
    async with make_client(settings_for(max_upload_bytes=100_000)) as client:
        _error(await client.post("/v1/transform", files=_files(buffer.getvalue())), 413, "upload_too_large")


async def test_streamed_body_without_length_is_cut_off(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(10_000):  # up to 640 MiB if nobody stops reading
            sent += 65536
            yield b"\0" * 65536

    async with make_client(settings_for(max_upload_bytes=1_000_000)) as client:
        response = await client.post(
            "/v1/transform", content=endless(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
    _error(response, 413, "upload_too_large")
    assert sent < 2_000_000


async def test_lying_content_length_is_refused_before_reading(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(max_upload_bytes=1_000_000)) as client:
        response = await client.post(
            "/v1/transform",
            content=b"x" * 10,
            headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(1 << 30)},
        )
    _error(response, 413, "upload_too_large")


async def test_unknown_style_is_404_listing_the_names(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    save_random_generator(weights_dir / "other.pt", sidecar={"name": "second"})
    async with make_client(settings_for()) as client:
        message = _error(
            await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "../../etc/passwd"}),
            404, "unknown_style",
        )
        assert "random" in message and "second" in message
        ok = await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "second"})
        assert ok.headers["x-style"] == "second"


async def test_styles_lists_metadata_and_unusable_files(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    save_random_generator(weights_dir / "legacy.pt", sidecar={"name": "legacy", "upsample": "tf_legacy", "license": "non-commercial"})
    (weights_dir / "broken.pt").write_bytes(b"not a checkpoint")
    async with make_client(settings_for(default_style="legacy")) as client:
        body = (await client.get("/v1/styles")).json()
    styles = {s["name"]: s for s in body["styles"]}
    assert set(styles) == {"broken", "legacy", "random"}
    assert styles["legacy"]["upsample"] == "tf_legacy" and styles["legacy"]["default"] is True
    assert styles["random"]["parameters"] == 2143552 and styles["random"]["file"] == "random.pt"
    assert styles["random"]["loaded"] and styles["random"]["available"] and styles["random"]["memory_bytes"] >= 0
    assert styles["random"]["weights_bytes"] > 8_000_000
    assert not styles["broken"]["available"] and "not a readable PyTorch checkpoint" in styles["broken"]["reason"]
    assert [u["file"] for u in body["unavailable"]] == ["broken.pt"]


async def test_health_and_readiness(client: AppClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["styles"] == ["random"]


async def test_not_ready_without_models(tmp_path: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(weights_dir=tmp_path / "empty")) as client:
        assert (await client.get("/healthz")).status_code == 200
        _error(await client.get("/readyz"), 503, "not_ready")
        _error(await client.post("/v1/transform", files=_files(picture_bytes())), 503, "not_ready")


async def test_overload_gives_fast_503_with_retry_after(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(workers=1, max_queue=2)) as client:
        _swap_predictor(client, _slow(0.4))
        responses = await asyncio.gather(
            *(client.post("/v1/transform", files=_files(picture_bytes())) for _ in range(6))
        )
        assert (await client.get("/readyz")).json()["in_flight"] == 0
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 503, 503, 503]
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "overloaded" for r in refused)


async def test_deadline_gives_504(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(request_timeout_s=0.2)) as client:
        _swap_predictor(client, _slow(0.6))
        _error(await client.post("/v1/transform", files=_files(picture_bytes())), 504, "deadline_exceeded")


async def test_model_failure_is_a_typed_500_and_the_next_request_works(client: AppClient) -> None:
    healthy = client.app.state.registry.entries["random"].loaded.predictor

    def explode(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    _swap_predictor(client, explode)
    _error(await client.post("/v1/transform", files=_files(picture_bytes())), 500, "inference_failed")
    _swap_predictor(client, healthy)
    assert (await client.post("/v1/transform", files=_files(picture_bytes()))).status_code == 200


async def test_rate_limit_gives_429_with_retry_after(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(rate_limit_enabled=True, rate_limit="2/minute")) as client:
        codes = [(await client.get("/v1/styles")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = await client.get("/v1/styles")
        _error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) > 0
        probes = [(await client.get(path)).status_code for path in ("/healthz", "/readyz") * 3]
        assert probes == [200] * 6


async def test_cors_allows_configured_origins_only(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(cors_origins="https://app.example")) as client:
        allowed = await client.get("/v1/styles", headers={"origin": "https://app.example"})
        other = await client.get("/v1/styles", headers={"origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


async def test_unknown_route_and_method_use_the_error_shape(client: AppClient) -> None:
    _error(await client.get("/nope"), 404, "not_found")
    _error(await client.get("/v1/transform"), 405, "method_not_allowed")


async def test_openapi_documents_every_status(client: AppClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    transform = schema["paths"]["/v1/transform"]["post"]
    assert {"200", "400", "404", "413", "415", "422", "429", "500", "503", "504"} <= set(transform["responses"])
    assert set(transform["responses"]["200"]["content"]) == {"image/png", "image/jpeg", "image/webp"}
    form = schema["components"]["schemas"][transform["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert {"image", "style", "max_side", "keep_size", "format", "quality"} <= set(form["properties"])
    assert {"/v1/styles", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "non-commercial" in schema["info"]["description"]
    assert (await client.get("/docs")).status_code == 200


async def test_repeated_upload_is_a_cache_hit_with_the_same_bytes(client: AppClient) -> None:
    photo = picture_bytes((40, 40), color=(10, 120, 200))
    first = await client.post("/v1/transform", files=_files(photo))
    calls: list[int] = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.zeros_like(batch)

    _swap_predictor(client, counting)
    second = await client.post("/v1/transform", files=_files(photo, name="other-name.png"))
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.content == first.content and second.headers["x-style"] == "random"
    assert second.headers["server-timing"].startswith("cache;dur=")
    assert calls == []
    metrics = (await client.get("/metrics")).text
    assert 'animegan_cache_lookups_total{result="hit"} 1.0' in metrics


@pytest.mark.parametrize("change", [{"format": "webp"}, {"max_side": "32"}, {"keep_size": "true"}, {"quality": "50"}])
async def test_any_output_parameter_is_part_of_the_cache_key(client: AppClient, change: dict[str, str]) -> None:
    photo = picture_bytes((40, 40), color=(90, 20, 200))
    await client.post("/v1/transform", files=_files(photo))
    response = await client.post("/v1/transform", files=_files(photo), data=change)
    assert response.status_code == 200 and response.headers["x-cache"] == "miss"


async def test_failures_are_not_cached_and_reload_empties_the_cache(client: AppClient) -> None:
    photo = picture_bytes((40, 40), color=(1, 2, 3))

    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    original = {name: entry.loaded for name, entry in client.app.state.registry.entries.items()}
    _swap_predictor(client, broken)
    assert (await client.post("/v1/transform", files=_files(photo))).status_code == 500
    for name, loaded in original.items():
        client.app.state.registry.entries[name].loaded = loaded
    assert (await client.post("/v1/transform", files=_files(photo))).headers["x-cache"] == "miss"
    assert (await client.post("/v1/transform", files=_files(photo))).headers["x-cache"] == "hit"
    assert (await client.post("/v1/admin/reload")).status_code == 200
    assert len(client.app.state.cache) == 0
    assert (await client.post("/v1/transform", files=_files(photo))).headers["x-cache"] == "miss"


async def test_cache_off_sends_no_cache_header(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(cache_max_bytes=0)) as client:
        photo = picture_bytes()
        for _ in range(2):
            response = await client.post("/v1/transform", files=_files(photo))
            assert response.status_code == 200 and "x-cache" not in response.headers


async def test_micro_batching_runs_waiting_requests_of_one_size_together(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(max_batch=4, cache_max_bytes=0)) as client:
        sizes: list[int] = []

        def recording(batch: np.ndarray) -> np.ndarray:
            sizes.append(batch.shape[0])
            time.sleep(0.3)
            return batch  # identity: each request must get its own picture back

        _swap_predictor(client, recording)
        colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
        first = asyncio.ensure_future(client.post("/v1/transform", files=_files(picture_bytes((32, 32), color=colours[0]))))
        await asyncio.sleep(0.15)
        rest = [client.post("/v1/transform", files=_files(picture_bytes((32, 32), color=c))) for c in colours[1:]]
        responses = await asyncio.gather(first, *rest)
    assert sizes == [1, 3]
    for response, colour in zip(responses, colours):
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).convert("RGB").getpixel((16, 16)) == colour
