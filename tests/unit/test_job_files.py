"""Both stores of job files keep the same contract: an input kept, a workspace for a run, a result kept and
read back by byte range, everything else cleared, all of it removed. Object storage is a real S3 endpoint
(moto's server on loopback) reached through the production client."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from animegan_api.failures import Refusal
from animegan_api.serving.jobs.files import Download, FolderFiles, JobFiles, LinkHeaders
from animegan_api.serving.jobs.s3_files import S3Files, parse_url
from s3_server import S3Bucket

LINK = LinkHeaders("video/mp4", 'inline; filename="clip_anime.mp4"')
RESULT = bytes(range(256)) * 40_000  # 10 MB: above one multipart part, so the upload goes in parts


@pytest.fixture(params=["folder", "s3"])
async def files(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobFiles]:
    store: JobFiles
    if request.param == "folder":
        store = FolderFiles(tmp_path / "files")
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        store = S3Files(bucket.url, tmp_path / "work", redirect=False)
    await store.start()
    yield store
    await store.close()


async def _upload(tmp_path: Path, data: bytes = b"the input") -> Path:
    upload = tmp_path / "upload"
    upload.write_bytes(data)
    return upload


async def _read(download: Download | object) -> bytes:
    assert isinstance(download, Download)
    return b"".join([chunk async for chunk in download.chunks])


async def test_a_run_sees_its_input_and_its_result_is_read_back_whole_or_by_range(
    files: JobFiles, tmp_path: Path
) -> None:
    upload = await _upload(tmp_path)
    await files.keep_input("job_1", upload)
    assert not upload.exists()  # moved into the store, never copied beside it
    workspace = await files.workspace("job_1")
    assert (workspace / "input").read_bytes() == b"the input"
    (workspace / "result.mp4").write_bytes(RESULT)
    await files.keep_result("job_1", "result.mp4")
    await files.release("job_1")
    await files.clear("job_1", keep="result.mp4")
    whole = await files.result("job_1", "result.mp4", len(RESULT), None, LINK)
    assert await _read(whole) == RESULT
    part = await files.result("job_1", "result.mp4", len(RESULT), (5_000_000, 5_000_100), LINK)
    assert await _read(part) == RESULT[5_000_000:5_000_100]
    await files.remove("job_1")
    with pytest.raises(Refusal) as gone:
        await files.result("job_1", "result.mp4", len(RESULT), None, LINK)
    assert gone.value.code == "job_not_found"


async def test_clearing_a_job_keeps_only_the_result_it_names(files: JobFiles, tmp_path: Path) -> None:
    await files.keep_input("job_2", await _upload(tmp_path))
    workspace = await files.workspace("job_2")
    (workspace / "result.zip").write_bytes(b"zip")
    await files.keep_result("job_2", "result.zip")
    await files.clear("job_2", keep="result.zip")
    assert await _read(await files.result("job_2", "result.zip", 3, None, LINK)) == b"zip"
    await files.clear("job_2", keep=None)  # a job that did not succeed keeps nothing
    with pytest.raises(Refusal):
        await files.result("job_2", "result.zip", 3, None, LINK)


async def test_object_storage_keeps_every_file_under_the_prefix_and_works_on_local_copies(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    files = S3Files(s3_bucket.url, tmp_path / "work", redirect=False)
    stale = tmp_path / "work" / "job_gone" / "input"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a crashed run")
    await files.start()
    assert not stale.exists()
    await files.keep_input("job_3", await _upload(tmp_path))
    workspace = await files.workspace("job_3")
    (workspace / "result.png").write_bytes(b"png")
    await files.keep_result("job_3", "result.png")
    assert s3_bucket.keys() == ["animegan/jobs/job_3/input", "animegan/jobs/job_3/result.png"]
    await files.release("job_3")
    assert not workspace.exists()
    await files.close()


async def test_a_signed_link_serves_the_result_with_the_names_asked_for(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    files = S3Files(s3_bucket.url, tmp_path / "work", redirect=True)
    await files.start()
    await files.keep_input("job_4", await _upload(tmp_path))
    (await files.workspace("job_4") / "result.mp4").write_bytes(RESULT[:1000])
    await files.keep_result("job_4", "result.mp4")
    link = await files.result("job_4", "result.mp4", 1000, None, LINK)
    assert not isinstance(link, Download)
    fetched = httpx.get(link.url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert fetched.status_code == 206 and fetched.content == RESULT[10:20]
    assert fetched.headers["content-type"] == "video/mp4"
    assert fetched.headers["content-disposition"] == LINK.disposition
    assert "X-Amz-Expires=900" in link.url
    await files.close()


async def test_an_unreachable_store_is_refused_at_once_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    variables = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in {**variables, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    files = S3Files("s3://nowhere/jobs", tmp_path / "work", redirect=False)
    await files.start()  # logs the store away; the service starts all the same
    upload = await _upload(tmp_path)
    began = time.monotonic()
    with pytest.raises(Refusal) as refused:
        await files.keep_input("job_5", upload)
    assert refused.value.code == "jobs_unavailable" and refused.value.headers["Retry-After"]
    assert time.monotonic() - began < 5
    assert upload.exists()  # the caller's to remove
    await files.close()


def test_a_store_url_is_a_bucket_and_a_prefix() -> None:
    assert parse_url("s3://media/animegan/jobs/") == ("media", "animegan/jobs")
    assert parse_url("s3://media") == ("media", "")
