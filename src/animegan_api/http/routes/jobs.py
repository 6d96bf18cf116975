"""``/v1/jobs``: long work (videos, ZIP batches, pictures too large for one request) submitted, watched, collected.

A submit is checked as far as headers allow before it is queued (kind,
limits, memory, disk), so a job that could never run is refused now, with
the error a request would get. Jobs belong to the API key that submitted
them; another key gets 404, the admin key sees every job.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, File, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from animegan_api.config import Settings
from animegan_api.http.deps import Caller, CallerDep, ReadyRegistry, ServicesDep, acquire, resolve, validation_error
from animegan_api.http.downloads import disposition, requested_span, send_result
from animegan_api.http.errors import ApiError
from animegan_api.http.job_schemas import (
    DeflickerField,
    FaceField,
    FpsField,
    IdempotencyKeyHeader,
    JobDocument,
    JobList,
    MarginField,
    MaxSideField,
    ModeField,
    RangeHeader,
)
from animegan_api.http.routes.inference import PICTURE_CONTENT, FormatField, QualityField, StyleField
from animegan_api.http.schemas import error_doc
from animegan_api.pictures.framing import DEFAULT_MARGIN
from animegan_api.serving.jobs.files import LinkHeaders
from animegan_api.serving.jobs.intake import admit, inspect_upload, sniff
from animegan_api.serving.jobs.records import Job, JobKind
from animegan_api.serving.services import Services

__all__ = ["delete_job", "get_job", "job_events", "job_result", "list_jobs", "submit_job"]

router = APIRouter(tags=["jobs"])

_UNAVAILABLE = (
    "Redis (`ANIMEGAN_REDIS_URL`) or the object store (`ANIMEGAN_JOB_STORE`) cannot be reached "
    "(`jobs_unavailable`); see `Retry-After`."
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_doc("No such job, or it belongs to another API key (`job_not_found`)."),
    503: error_doc(_UNAVAILABLE),
}
_RESULT_CONTENT = {"video/mp4": {}, "application/zip": {}, **PICTURE_CONTENT}
_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("A picture that starts like an accepted format but cannot be read (`corrupt_image`)."),
    404: error_doc("Unknown `style` (`unknown_style`)."),
    413: error_doc(
        "Upload above `job_max_upload_bytes` (`upload_too_large`); a video longer or larger than the limits "
        "(`video_too_long`, `video_too_large`); a ZIP over its file count, inflated size or ratio "
        "(`archive_too_large`); a frame or picture that could never fit the memory budget (`too_large_for_memory`)."
    ),
    415: error_doc("Not an MP4/MOV or Matroska/WebM video, a ZIP or a picture (`unsupported_format`)."),
    422: error_doc(
        "A video that cannot be decoded (`invalid_video`), a broken, encrypted or nested ZIP (`invalid_archive`), "
        "or a field out of range (`invalid_request`)."
    ),
    503: error_doc(f"The service is starting or draining (`not_ready`, `shutting_down`). {_UNAVAILABLE}"),
    507: error_doc("The job folder has no room for this job's files (`insufficient_storage`); see `Retry-After`."),
}


@router.post(
    "/v1/jobs",
    summary="Submit a video, a ZIP of pictures, or one large picture as a job",
    status_code=202,
    response_model=JobDocument,
    responses={200: {"description": "A retry with a known `Idempotency-Key`: the job it made."}, **_SUBMIT_ERRORS},
)
async def submit_job(
    request: Request,
    file: Annotated[UploadFile, File(description="A video (MP4/MOV, Matroska/WebM), a ZIP of pictures, or a picture.")],
    services: ServicesDep,
    registry: ReadyRegistry,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
    style: StyleField = None,
    max_side: MaxSideField = None,
    format: FormatField = "png",
    quality: QualityField = 90,
    fps: FpsField = None,
    deflicker: DeflickerField = False,
    mode: ModeField = "transform",
    face: FaceField = "largest",
    margin: MarginField = DEFAULT_MARGIN,
) -> Response:
    jobs, settings = services.jobs, services.settings
    if idempotency_key and (known := await jobs.store.by_key(caller.owner, idempotency_key)):
        return await _document(services, known, 200)
    kind = sniff(await file.read(16))
    side = _side(kind, max_side, settings)
    if kind == "video" and mode == "avatar":
        raise validation_error("mode", "Videos are transformed whole; mode=avatar is for batches and pictures", mode)
    entry = resolve(registry, style)
    loaded = await acquire(registry, entry)
    upload = await _spool(file, settings.job_dir / "incoming")
    try:
        intake = await asyncio.to_thread(inspect_upload, upload, settings, loaded, side, fps)
        seconds_per_unit = admit(services.engine, loaded, intake)
        options: dict[str, Any] = {"max_side": side}
        if kind == "video":
            options |= {"fps": fps, "deflicker": deflicker}
        else:
            options |= {"mode": mode, "format": format, "quality": quality}
        if mode == "avatar" and kind != "video":
            options |= {"face": face, "margin": margin}
        job, created = await jobs.submit(
            upload,
            intake,
            entry.name,
            options,
            owner=caller.owner,
            idempotency_key=idempotency_key,
            input_name=(file.filename or "")[:200],
            seconds_per_unit=seconds_per_unit,
        )
    finally:
        upload.unlink(missing_ok=True)
    request.state.style = entry.name
    return await _document(services, job, 202 if created else 200)


@router.get(
    "/v1/jobs",
    summary="List the caller's jobs, newest first",
    response_model=JobList,
    responses={503: error_doc(_UNAVAILABLE)},
)
async def list_jobs(
    services: ServicesDep,
    caller: CallerDep,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "canceled"] | None, Query(description="Only this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the page before.")] = None,
) -> JobList:
    owner = None if caller.admin else caller.owner
    jobs = await services.jobs.store.page(owner, status, limit + 1, _read_cursor(cursor))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    documents = [JobDocument.model_validate(doc) for doc in await services.jobs.documents(jobs)]
    return JobList(jobs=documents, next_cursor=_cursor(jobs[-1]) if more else None)


@router.get(
    "/v1/jobs/{job_id}", summary="A job's status, progress and result", response_model=JobDocument, responses=_NOT_FOUND
)
async def get_job(job_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    return await _document(services, await _visible(services, job_id, caller), 200)


@router.get(
    "/v1/jobs/{job_id}/events",
    summary="Server-Sent Events: the job document at every change, until it ends",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`; each event's `data` is the job document and its `id` the job's "
            "version (send it back as `Last-Event-ID` to resume). Progress comes at most every 0.5 s; the stream "
            "ends after `succeeded`, `failed` or `canceled`.",
            "content": {"text/event-stream": {}},
        },
        **_NOT_FOUND,
    },
)
async def job_events(
    job_id: str,
    services: ServicesDep,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    await _visible(services, job_id, caller)
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for job in services.jobs.changes(job_id, after):
            if job is None:
                yield ": keep-alive\n\n"
                continue
            yield f"id: {job.version}\ndata: {json.dumps(await services.jobs.document(job))}\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get(
    "/v1/jobs/{job_id}/result",
    summary="Download a finished job's result (one byte range with `Range`, for seeking)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The MP4, ZIP (with `manifest.json`) or picture.",
            "content": _RESULT_CONTENT,
        },
        206: {"description": "The byte range asked for with `Range`.", "content": _RESULT_CONTENT},
        307: {
            "description": "With `ANIMEGAN_JOB_RESULT_REDIRECT`: `Location` is a link to the result, signed for "
            "15 minutes, straight from the object store."
        },
        409: error_doc("The job has not succeeded (`job_not_finished`)."),
        416: error_doc("The range starts past the result's end (`range_not_satisfiable`); see `Content-Range`."),
        **_NOT_FOUND,
    },
)
async def job_result(
    job_id: str,
    services: ServicesDep,
    caller: CallerDep,
    byte_range: RangeHeader = None,
) -> Response:
    job = await _visible(services, job_id, caller)
    if job.status != "succeeded" or not job.result_name:
        raise ApiError("job_not_finished", f"the job is {job.status}; its result is served once it has succeeded")
    size, media_type = job.result_bytes or 0, job.content_type or "application/octet-stream"
    span = requested_span(byte_range, size)
    name = Path(job.input_name or "result").stem[:80] + "_anime" + Path(job.result_name).suffix
    header = disposition("inline" if job.kind == "video" else "attachment", name)
    result = await services.jobs.files.result(job.id, job.result_name, size, span, LinkHeaders(media_type, header))
    return send_result(result, media_type, header)


@router.delete(
    "/v1/jobs/{job_id}",
    summary="Cancel a job, or delete a finished one and its result",
    response_model=JobDocument,
    responses={204: {"description": "The finished job and its result are deleted."}, **_NOT_FOUND},
)
async def delete_job(job_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    job = await services.jobs.cancel(await _visible(services, job_id, caller))
    return Response(status_code=204) if job is None else await _document(services, job, 200)


async def _visible(services: Services, job_id: str, caller: Caller) -> Job:
    job = await services.jobs.get(job_id, caller.owner, caller.admin)
    if job is None:
        raise ApiError("job_not_found", f"no job {job_id[:64]!r}")
    return job


async def _document(services: Services, job: Job, status: int) -> JSONResponse:
    document = await services.jobs.document(job)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if job.status in ("queued", "running"):
        headers["Retry-After"] = str(_poll_after(document["eta_s"]))
    return JSONResponse(document, status, headers=headers)


def _poll_after(eta_s: float | None) -> int:
    """When a poller should look again: a tenth of the time left, between 1 and 10 s (the events stream is live)."""
    return 1 if eta_s is None else max(1, min(10, round(eta_s / 10)))


def _side(kind: JobKind, max_side: int | None, settings: Settings) -> int:
    limit = settings.job_max_side_limit if kind == "picture" else settings.max_side_limit
    side = settings.default_max_side if max_side is None else max_side
    if side > limit:
        raise validation_error("max_side", f"Input should be less than or equal to {limit} for a {kind} job", side)
    return side


async def _spool(file: UploadFile, folder: Path) -> Path:
    """The upload copied into the job folder's disk (never held in memory whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / secrets.token_hex(8)
    await file.seek(0)

    def copy(source: IO[bytes]) -> None:
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)

    await asyncio.to_thread(copy, file.file)
    return target


def _cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at!r}|{job.id}".encode()).decode()


def _read_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        created, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return float(created), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise validation_error("cursor", "Not a cursor this service gave", cursor) from None
