"""Where a job's files live, seen through the API: the job folder or S3-compatible object storage (a real
S3 endpoint on loopback), with the same downloads, byte ranges, errors and clean-up either way."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from animegan_api.config import Settings
from conftest import AppClient, expect_error, picture_bytes, serving
from job_calls import finished, submit
from s3_server import S3Bucket

PHOTO = picture_bytes((300, 200), fmt="JPEG")


@pytest.fixture(params=["folder", "s3"])
async def stored(request: pytest.FixtureRequest, settings_for: Callable[..., Settings]) -> AsyncIterator[AppClient]:
    """An app keeping job files in its job folder, or in a bucket."""
    overrides: dict[str, Any] = {}
    if request.param == "s3":
        overrides["job_store"] = request.getfixturevalue("s3_bucket").url
    async with serving(settings_for(**overrides)) as client:
        yield client


async def _succeeded(client: AppClient) -> dict[str, Any]:
    job = await submit(client, PHOTO, name="été.jpg", format="png")
    final = await finished(client, job["id"])
    assert final["status"] == "succeeded", final
    return final


async def test_a_result_comes_back_whole_or_by_range_from_either_store(stored: AppClient) -> None:
    final = await _succeeded(stored)
    url, size = final["result"]["url"], final["result"]["bytes"]
    whole = await stored.get(url)
    assert whole.status_code == 200 and len(whole.content) == size and whole.content.startswith(b"\x89PNG")
    assert whole.headers["content-type"] == "image/png" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"] == "attachment; filename*=utf-8''%C3%A9t%C3%A9_anime.png"
    tail = await stored.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]
    assert tail.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    several = await stored.get(url, headers={"Range": "bytes=0-1,5-9"})
    assert several.status_code == 200 and several.content == whole.content
    past = await stored.get(url, headers={"Range": f"bytes={size}-"})
    expect_error(past, 416, "range_not_satisfiable")
    assert past.headers["content-range"] == f"bytes */{size}"


async def test_a_job_in_object_storage_keeps_only_its_result_and_leaves_nothing_when_deleted(
    settings_for: Callable[..., Settings], s3_bucket: S3Bucket
) -> None:
    async with serving(settings_for(job_store=s3_bucket.url)) as client:
        final = await _succeeded(client)
        assert s3_bucket.job_keys(final["id"]) == ["result.png"]
        work = client.app.state.services.settings.job_dir / "work"
        assert list(work.iterdir()) == []  # the run's local copies went with it
        assert (await client.delete(f"/v1/jobs/{final['id']}")).status_code == 204
        assert s3_bucket.keys() == []


async def test_with_redirects_a_download_is_a_signed_link_to_the_store(
    settings_for: Callable[..., Settings], s3_bucket: S3Bucket
) -> None:
    async with serving(settings_for(job_store=s3_bucket.url, job_result_redirect=True)) as client:
        final = await _succeeded(client)
        answer = await client.get(final["result"]["url"])
        assert answer.status_code == 307
        fetched = httpx.get(answer.headers["location"], timeout=10)
        assert fetched.status_code == 200 and len(fetched.content) == final["result"]["bytes"]
        assert fetched.headers["content-type"] == "image/png"
        assert fetched.headers["content-disposition"].endswith("%C3%A9t%C3%A9_anime.png")


async def test_an_unreachable_store_costs_the_job_routes_only(
    settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    variables = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    async with serving(settings_for(job_store="s3://away/jobs")) as client:
        began = time.monotonic()
        refused = await client.post("/v1/jobs", files={"file": ("p.jpg", PHOTO)})
        expect_error(refused, 503, "jobs_unavailable")
        assert time.monotonic() - began < 5 and refused.headers["retry-after"] == "5"
        assert (await client.post("/v1/transform", files={"image": ("p.jpg", PHOTO)})).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        incoming = client.app.state.services.settings.job_dir / "incoming"
        assert list(incoming.iterdir()) == []  # the refused upload left nothing behind
