from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from animegan_api.config import Settings
from conftest import AppClient, expect_error, picture_bytes, save_random_generator, swap_predictor, upload
from gates import Gate, until


async def test_transform_returns_a_png_of_the_processed_size(client: AppClient) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes((70, 50))))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-style"] == "random"
    timing = response.headers["server-timing"]
    assert [part.split(";")[0] for part in timing.split(", ")] == ["decode", "queue", "inference", "encode"]
    assert Image.open(io.BytesIO(response.content)).size == (68, 48)


@pytest.mark.parametrize(("fmt", "media"), [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
async def test_output_formats(client: AppClient, fmt: str, media: str) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes()), data={"format": fmt, "quality": "70"})
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert Image.open(io.BytesIO(response.content)).format == fmt.upper()


async def test_max_side_and_keep_size(client: AppClient) -> None:
    data = picture_bytes((300, 150), "JPEG")
    small = await client.post("/v1/transform", files=upload(data), data={"max_side": "100"})
    assert Image.open(io.BytesIO(small.content)).size == (100, 48)
    kept = await client.post("/v1/transform", files=upload(data), data={"max_side": "100", "keep_size": "true"})
    assert Image.open(io.BytesIO(kept.content)).size == (300, 150)


async def test_alpha_channel_survives(client: AppClient) -> None:
    source = Image.new("RGBA", (32, 32), (200, 10, 10, 255))
    source.putalpha(Image.linear_gradient("L").resize((32, 32)))
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    response = await client.post("/v1/transform", files=upload(buffer.getvalue()))
    result = Image.open(io.BytesIO(response.content))
    assert result.mode == "RGBA"
    assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(source.getchannel("A")))


async def test_missing_image_field_is_a_validation_error(client: AppClient) -> None:
    response = await client.post("/v1/transform", files={"picture": ("a.png", picture_bytes(), "image/png")})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "image"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"quality": "0"}, "quality"),
        ({"quality": "101"}, "quality"),
        ({"max_side": "8"}, "max_side"),
        ({"max_side": "4096"}, "max_side"),
        ({"max_side": "abc"}, "max_side"),
        ({"format": "gif"}, "format"),
    ],
)
async def test_bad_parameters_are_validation_errors(client: AppClient, data: dict[str, str], field: str) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes()), data=data)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == field


async def test_unsupported_upload_is_415(client: AppClient) -> None:
    message = expect_error(
        await client.post("/v1/transform", files=upload(b"<html>hi</html>", "photo.jpg")), 415, "unsupported_image"
    )
    assert "JPEG" in message


async def test_format_comes_from_the_bytes_not_the_name(client: AppClient) -> None:
    jpeg = picture_bytes((40, 24), fmt="JPEG", color=(20, 200, 90))
    response = await client.post("/v1/transform", files=upload(jpeg, "looks_like.gif"), data={"format": "png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == "PNG" and picture.size == (40, 24)  # decoded as the JPEG it is, not as a GIF


async def test_corrupt_upload_is_400(client: AppClient) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    expect_error(await client.post("/v1/transform", files=upload(buffer.getvalue()[:1500])), 400, "corrupt_image")


async def test_too_many_pixels_is_413(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(max_pixels=1000)) as client:
        expect_error(
            await client.post("/v1/transform", files=upload(picture_bytes((100, 100)))), 413, "image_too_large"
        )


async def test_upload_over_the_limit_is_413(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    big = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")
    async with make_client(settings_for(max_upload_bytes=100_000)) as client:
        expect_error(await client.post("/v1/transform", files=upload(buffer.getvalue())), 413, "upload_too_large")


async def test_streamed_body_without_length_is_cut_off(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        for _ in range(10_000):  # up to 640 MiB if nobody stops reading
            sent += 65536
            yield b"\0" * 65536

    async with make_client(settings_for(max_upload_bytes=1_000_000)) as client:
        response = await client.post(
            "/v1/transform", content=endless(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
    expect_error(response, 413, "upload_too_large")
    assert sent < 2_000_000


async def test_lying_content_length_is_refused_before_reading(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(max_upload_bytes=1_000_000)) as client:
        response = await client.post(
            "/v1/transform",
            content=b"x" * 10,
            headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(1 << 30)},
        )
    expect_error(response, 413, "upload_too_large")


async def test_unknown_style_is_404_listing_the_names(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    save_random_generator(weights_dir / "other.pt", sidecar={"name": "second"})
    async with make_client(settings_for()) as client:
        message = expect_error(
            await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "../../etc/passwd"}),
            404,
            "unknown_style",
        )
        assert "random" in message and "second" in message
        ok = await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "second"})
        assert ok.headers["x-style"] == "second"


async def test_overload_gives_fast_503_with_retry_after(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    """W=1 and 2 waiting: with the model held, the next three are refused at once; the held three all finish."""
    async with make_client(settings_for(workers=1, max_queue=2)) as client:
        gate = Gate(output=np.zeros_like)
        swap_predictor(client, gate)
        engine = client.app.state.services.engine
        held = [asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes()))) for _ in range(3)]
        await until(lambda: engine.admitted == 3)
        refused = [await client.post("/v1/transform", files=upload(picture_bytes())) for _ in range(3)]
        gate.open()
        served = await asyncio.gather(*held)
        assert (await client.get("/readyz")).json()["in_flight"] == 0
    assert [r.status_code for r in served] == [200, 200, 200]
    assert all(r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "overloaded" for r in refused)
    assert len(gate.inputs) == 3


async def test_deadline_gives_504(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    """The model is held past the request's 0.2 s deadline: the answer is a 504, not a wait for the model."""
    async with make_client(settings_for(request_timeout_s=0.2)) as client:
        gate = Gate(output=np.zeros_like)
        swap_predictor(client, gate)
        expect_error(await client.post("/v1/transform", files=upload(picture_bytes())), 504, "deadline_exceeded")
        gate.open()


async def test_model_failure_is_a_typed_500_and_the_next_request_works(client: AppClient) -> None:
    healthy = client.app.state.services.registry.entries["random"].loaded.predictor

    def explode(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    swap_predictor(client, explode)
    expect_error(await client.post("/v1/transform", files=upload(picture_bytes())), 500, "inference_failed")
    swap_predictor(client, healthy)
    assert (await client.post("/v1/transform", files=upload(picture_bytes()))).status_code == 200


async def test_micro_batching_runs_waiting_requests_of_one_size_together(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(max_batch=4, cache_max_bytes=0)) as client:
        gate = Gate(output=lambda batch: batch)  # identity: each request must get its own picture back
        swap_predictor(client, gate)
        colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
        first = asyncio.ensure_future(
            client.post("/v1/transform", files=upload(picture_bytes((32, 32), color=colours[0])))
        )
        await gate.started(1)
        rest = [
            asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes((32, 32), color=c))))
            for c in colours[1:]
        ]
        engine, arrived = client.app.state.services.engine, []
        run_batch = engine.run_batch

        async def counted(*args: Any, **kwargs: Any) -> Any:
            arrived.append(1)
            return await run_batch(*args, **kwargs)

        engine.run_batch = counted
        await until(lambda: len(arrived) == 3)  # all three decoded and at the batcher
        gate.open()
        responses = await asyncio.gather(first, *rest)
    assert gate.batch_sizes == [1, 3]
    for response, colour in zip(responses, colours, strict=True):
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).convert("RGB").getpixel((16, 16)) == colour


async def test_compare_returns_a_captioned_sheet(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    save_random_generator(weights_dir / "second.pt", seed=1, sidecar={"name": "second", "display_name": "Second style"})
    async with make_client(settings_for(compare_max_styles=2)) as client:
        response = await client.post("/v1/compare", files=upload(picture_bytes((120, 80))))
        assert response.status_code == 200 and response.headers["x-styles"] == "random,second"
        sheet = Image.open(io.BytesIO(response.content))
        assert sheet.width > 3 * 120 and 80 < sheet.height < 160  # one row: original and two styles
        chosen = await client.post("/v1/compare", files=upload(picture_bytes()), data={"styles": "second"})
        assert chosen.headers["x-styles"] == "second"
        too_many = await client.post("/v1/compare", files=upload(picture_bytes()), data={"styles": "random,second,x"})
        assert too_many.status_code == 422 and too_many.json()["error"]["fields"][0]["field"] == "styles"
        unknown = await client.post("/v1/compare", files=upload(picture_bytes()), data={"styles": "random,x"})
        assert unknown.status_code == 404
        bad = await client.post("/v1/compare", files=upload(b"nope"))
        assert bad.status_code == 415


async def test_compare_with_only_separators_names_no_style_and_is_422(client: AppClient) -> None:
    response = await client.post("/v1/compare", files=upload(picture_bytes()), data={"styles": " , ,"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "styles"
