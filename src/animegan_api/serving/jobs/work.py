"""What a running job does, by kind: a video through the frame pipeline, a batch and a picture through the runner.

Each function writes the job's result into its folder and returns the
result's file name and media type; a stop or a failure leaves no partial
result behind (the caller removes the folder's leftovers).
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animegan_api.failures import Refusal
from animegan_api.pictures import archives
from animegan_api.pictures.framing import FaceChoice
from animegan_api.pictures.video import file_format, probe
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.jobs.gate import JobGate
from animegan_api.serving.jobs.intake import unit_need
from animegan_api.serving.jobs.records import Job
from animegan_api.serving.jobs.video_work import VideoRequest, convert_video
from animegan_api.serving.plans import Faces, Output, Plan, avatar_plan, transform_plan
from animegan_api.serving.runner import Runner

__all__ = ["Work", "run_job"]

_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass
class Work:
    """One job's run: its record, its folder, its loaded style, and how it reports progress."""

    job: Job
    folder: Path
    style: LoadedStyle
    gate: JobGate
    runner: Runner
    progress: Callable[[], None]
    nice: int = 0  # the video threads' nice increment, as the inference threads'

    @property
    def source(self) -> Path:
        return self.folder / "input"


async def run_job(work: Work) -> tuple[str, str]:
    """Run the job to its result file; returns (file name, media type)."""
    kind = work.job.kind
    if kind == "video":
        return await _video(work)
    if kind == "batch":
        return await _batch(work)
    return await _picture(work)


async def _video(work: Work) -> tuple[str, str]:
    options, job = work.job.options, work.job
    fmt = file_format(work.source)
    assert fmt is not None
    info = await asyncio.to_thread(probe, work.source, fmt)
    request = VideoRequest(
        work.source, info, work.style, options["max_side"], options.get("fps"), options["deflicker"], work.nice
    )
    await work.gate.hold(unit_need(work.style, request.size), "a frame of this video")

    def advance(done: int) -> None:
        job.done = done
        job.total = max(job.total, done)
        work.progress()

    frames = await convert_video(request, work.folder / "result.mp4", work.gate.forward, work.gate.check, advance)
    job.done = job.total = frames
    return "result.mp4", "video/mp4"


async def _picture(work: Work) -> tuple[str, str]:
    plan = _plan(work.job.options, work.style)
    data = await asyncio.to_thread(work.source.read_bytes)
    converted = await work.runner.run(plan, data, work.gate)
    name = "result" + _SUFFIXES[plan.output.format]
    await asyncio.to_thread((work.folder / name).write_bytes, converted.body)
    work.job.done = 1
    return name, converted.media_type


async def _batch(work: Work) -> tuple[str, str]:
    """Each picture alone under the memory budget; one that fails is named in the manifest, the rest go on."""
    job, plan = work.job, _plan(work.job.options, work.style)
    entries = await asyncio.to_thread(_entries, work.source, job.total)
    suffix = _SUFFIXES[plan.output.format]
    target = work.folder / "result.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as results:
        for entry in entries:
            work.gate.check()
            item: dict[str, Any] = {"name": entry.name, "status": "succeeded", "error": None, "result": None}
            try:
                data = await asyncio.to_thread(archives.read_entry, work.source, entry)
                converted = await work.runner.run(plan, data, work.gate)
                item["result"] = archives.output_name(entry, suffix)
                await asyncio.to_thread(results.writestr, item["result"], converted.body)
            except Refusal as exc:
                item.update(status="failed", error={"code": exc.code, "message": exc.message})
            finally:
                work.gate.release()
            job.items.append(item)
            job.done += 1
            work.progress()
        manifest = {"style": job.style, "options": job.options, "items": job.items}
        results.writestr("manifest.json", json.dumps(manifest, indent=2))
    return "result.zip", "application/zip"


def _entries(source: Path, expected: int) -> list[archives.Entry]:
    """The batch's entries as submit counted them (the limits were checked there)."""
    return archives.inspect(source, archives.Limits(expected, 1 << 62, float("inf")))


def _plan(options: dict[str, Any], style: LoadedStyle) -> Plan:
    output = Output(options["format"], options["quality"])
    if options.get("mode") == "avatar":
        face: FaceChoice = options["face"] if options["face"] in ("largest", "all") else int(options["face"])
        return avatar_plan(style, options["max_side"], Faces(face, options["margin"]), output)
    return transform_plan(style, options["max_side"], output)
