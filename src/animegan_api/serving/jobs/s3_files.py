"""Job files in S3-compatible object storage (``ANIMEGAN_JOB_STORE=s3://bucket/prefix``), for clusters with no
shared volume.

boto3 finds the endpoint, region and credentials where every AWS tool looks
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, a web identity
token on EKS, an instance role), so nothing of ours configures them. Its calls
block, so each runs on a thread. Transfers go through s3transfer's managers
(multipart, resumable parts), one per client, so every transfer of the
replica together holds at most ``2 x _THREADS`` parts of ``_PART`` bytes in
memory (64 MiB).

Two clients: the API's (a submit's upload, a download) gives up within a
couple of seconds when the store is away, so the routes answer 503 at once;
the runs' waits out a short outage with backoff before the job fails.
Checksums are sent only where S3 requires them, as S3-compatible stores
differ in the ones they accept.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.manager import TransferConfig, TransferManager

from animegan_api.failures import Refusal
from animegan_api.serving.jobs.files import CHUNK, Download, LinkHeaders, Redirect, Span, gone

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import DeleteTypeDef, ObjectIdentifierTypeDef

__all__ = ["S3Files", "parse_url"]

log = logging.getLogger("animegan_api.jobs")

_PART = 8 << 20
_THREADS = 4
_LINK_S = 900  # how long a signed result link works
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_COMMON: dict[str, Any] = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "max_pool_connections": _THREADS + 8,
    "signature_version": "s3v4",  # signed links too (boto3 still signs them with SigV2 by default)
}
_API = Config(connect_timeout=1, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}, **_COMMON)
_RUNS = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 8, "mode": "standard"}, **_COMMON)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix without slashes at its ends)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


class S3Files:
    """Each job's files under ``prefix/job_id/`` in one bucket; runs work on copies in ``scratch/job_id``."""

    def __init__(self, url: str, scratch: Path, redirect: bool) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.scratch, self.redirect = scratch, redirect
        session = boto3.session.Session()
        self._api: S3Client = session.client("s3", config=_API)
        self._runs: S3Client = session.client("s3", config=_RUNS)
        transfer = TransferConfig(
            multipart_threshold=_PART,
            multipart_chunksize=_PART,
            max_request_concurrency=_THREADS,
            max_in_memory_upload_chunks=_THREADS,
            max_in_memory_download_chunks=_THREADS,
        )
        self._api_transfers = TransferManager(self._api, transfer)
        self._run_transfers = TransferManager(self._runs, transfer)

    async def start(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.scratch, True)  # a crashed run's copies: its job runs again
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        try:  # a store away at start: job routes answer 503 until it is back
            await asyncio.to_thread(lambda: self._api.head_bucket(Bucket=self.bucket))
        except (BotoCoreError, ClientError) as exc:
            log.warning("job store s3://%s cannot be used at start: %s", self.bucket, exc)

    async def keep_input(self, job_id: str, upload: Path) -> None:
        with _refusals("files"):
            future = self._api_transfers.upload(str(upload), self.bucket, self._key(job_id, "input"))
            await asyncio.to_thread(future.result)
        await asyncio.to_thread(upload.unlink, True)

    async def workspace(self, job_id: str) -> Path:
        folder = self.scratch / job_id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        with _refusals("input"):
            future = self._run_transfers.download(self.bucket, self._key(job_id, "input"), str(folder / "input"))
            await asyncio.to_thread(future.result)
        return folder

    async def keep_result(self, job_id: str, name: str) -> None:
        with _refusals("files"):
            future = self._run_transfers.upload(str(self.scratch / job_id / name), self.bucket, self._key(job_id, name))
            await asyncio.to_thread(future.result)

    async def release(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.scratch / job_id, True)

    async def clear(self, job_id: str, keep: str | None) -> None:
        await self._delete(job_id, keep)

    async def remove(self, job_id: str) -> None:
        await self._delete(job_id, None)

    async def result(
        self, job_id: str, name: str, size: int, span: Span | None, link: LinkHeaders
    ) -> Download | Redirect:
        key = self._key(job_id, name)
        if self.redirect:
            params = {"Bucket": self.bucket, "Key": key, "ResponseContentType": link.media_type}
            params["ResponseContentDisposition"] = link.disposition
            return Redirect(self._api.generate_presigned_url("get_object", Params=params, ExpiresIn=_LINK_S))
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if span is not None:
            arguments["Range"] = f"bytes={span[0]}-{span[1] - 1}"
        with _refusals("result"):
            answer = await asyncio.to_thread(lambda: self._api.get_object(**arguments))
        return Download(size, span, _chunks(answer["Body"]), answer.get("ETag"))

    async def close(self) -> None:
        for manager in (self._api_transfers, self._run_transfers):
            await asyncio.to_thread(manager.shutdown, True)

    def _key(self, job_id: str, name: str) -> str:
        return f"{self.prefix}/{job_id}/{name}" if self.prefix else f"{job_id}/{name}"

    async def _delete(self, job_id: str, keep: str | None) -> None:
        folder = self._key(job_id, "")
        with _refusals("files"):
            listed = await asyncio.to_thread(lambda: self._api.list_objects_v2(Bucket=self.bucket, Prefix=folder))
            doomed: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in listed.get("Contents", []) if item["Key"] != folder + (keep or "")
            ]
            if doomed:
                batch: DeleteTypeDef = {"Objects": doomed, "Quiet": True}
                await asyncio.to_thread(lambda: self._api.delete_objects(Bucket=self.bucket, Delete=batch))


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    """The object's bytes a chunk at a time, read on threads; the connection goes back to the pool at the end."""
    try:
        while chunk := await asyncio.to_thread(body.read, CHUNK):
            yield chunk
    finally:
        body.close()


@contextmanager
def _refusals(what: str) -> Iterator[None]:
    """The store's failures as the API's: an object gone is ``job_not_found``, anything else ``jobs_unavailable``."""
    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            raise gone(what) from exc
        raise _unavailable(str(exc)) from exc
    except (BotoCoreError, OSError) as exc:
        raise _unavailable(str(exc)) from exc


def _unavailable(reason: str) -> Refusal:
    return Refusal("jobs_unavailable", f"the job store cannot be used: {reason[:200]}", {"Retry-After": "5"})
