"""What a job upload is and what it will cost, decided at submit from the bytes alone.

The kind comes from the magic bytes, never from the file name: an MP4/MOV or
Matroska/WebM video, a ZIP batch, or one picture; anything else (an HLS
playlist, an ffconcat list, a script) is ``unsupported_format``. Every limit
that a header can answer is checked here, so a job that could never run is
refused with a typed error at submit instead of failing later: the video's
duration, frames and pixels, the archive's size and ratio, the memory one
frame or picture needs, and the disk its files will take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from animegan_api.config import Settings
from animegan_api.failures import Refusal
from animegan_api.pictures import archives, imaging
from animegan_api.pictures.video import DEMUXERS, VideoInfo, container_format, file_format, probe
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.engine import InferenceEngine
from animegan_api.serving.jobs.records import JobKind
from animegan_api.serving.jobs.video_work import expected_frames, processing_size
from animegan_api.serving.sizing import Need, memory_need

__all__ = ["Intake", "admit", "inspect_upload", "sniff", "unit_need"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_VIDEO_BYTES_PER_PIXEL = 0.5  # H.264 at crf 20 stays well under this: the disk a result is counted at
_PICTURE_BYTES_PER_PIXEL = 4  # a PNG of a photo, at worst


@dataclass(frozen=True)
class Intake:
    """What submit learned of an upload: its kind, units of work, their model input size, and their cost."""

    kind: JobKind
    total: int  # frames or pictures
    unit_size: tuple[int, int]  # a frame's (or the largest picture's) model input size
    output_bytes: int  # predicted size of the result
    entries: list[archives.Entry] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def sniff(head: bytes) -> JobKind:
    """The job's kind from the upload's first bytes."""
    if container_format(head) is not None:
        return "video"
    if head.startswith(_ZIP_MAGIC):
        return "batch"
    if imaging.has_accepted_signature(head):
        return "picture"
    formats = ", ".join([*DEMUXERS.values(), "ZIP", *imaging.public_formats()])
    raise Refusal("unsupported_format", f"the upload is not a video, ZIP or picture this service reads ({formats})")


def inspect_upload(path: Path, settings: Settings, style: LoadedStyle, side: int, fps: float | None) -> Intake:
    """Read the upload's header and refuse what the limits or the memory budget could never take."""
    with path.open("rb") as handle:
        head = handle.read(16)
    kind = sniff(head)
    if kind == "video":
        return _video(path, settings, style, side, fps)
    if kind == "batch":
        return _batch(path, settings, side)
    header = imaging.sizes(path.read_bytes(), max_pixels=settings.max_pixels, max_side=side)
    size = imaging.plan_size(*header.original, side, style.size_multiple)
    return Intake("picture", 1, size, _PICTURE_BYTES_PER_PIXEL * size[0] * size[1])


def admit(engine: InferenceEngine, style: LoadedStyle, intake: Intake) -> float:
    """Refuse a job whose frame or picture could never fit the memory budget; its model seconds per unit.

    The speed is the engine's learned one (seeded from the style's warm-up), as requests are priced.
    """
    budget, need = engine.budget, unit_need(style, intake.unit_size)
    if budget is not None and not budget.fits(need.nbytes):
        unit = "frame" if intake.kind == "video" else "picture"
        raise Refusal("too_large_for_memory", need.refusal(f"one {unit}", budget.capacity, "piece of work"))
    if style.warm_timing:
        engine.speed.seed(style.predictor, *style.warm_timing)
    width, height = intake.unit_size
    return engine.speed.expected_s(style.predictor, 3 * width * height)


def unit_need(style: LoadedStyle, size: tuple[int, int]) -> Need:
    """Bytes one frame or picture of ``size`` holds while it runs: frames in flight on both sides of the
    forward (read ahead, and the outputs being converted and encoded) beside it."""
    pixels = size[0] * size[1]
    return memory_need([style], imaging.Sizes(size, size, 0), keep_size=False, held_bytes=42 * pixels)


def _video(path: Path, settings: Settings, style: LoadedStyle, side: int, fps: float | None) -> Intake:
    fmt = file_format(path)
    assert fmt is not None
    info = probe(path, fmt)
    _check_video(info, settings)
    size = processing_size(info, side, style.size_multiple)
    frames = expected_frames(info, fps)
    output = math.ceil(frames * size[0] * size[1] * _VIDEO_BYTES_PER_PIXEL) + path.stat().st_size
    facts = {
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "frame_rate": str(info.rate),
        "duration_s": round(info.duration_s, 3),
        "audio": list(info.audio),
        "output_size": list(size),
    }
    return Intake("video", frames, size, output, facts=facts)


def _check_video(info: VideoInfo, settings: Settings) -> None:
    pixels = info.width * info.height
    if info.duration_s > settings.video_max_duration_s:
        message = f"the video lasts {info.duration_s:.1f} s; at most {settings.video_max_duration_s:g} s"
        raise Refusal("video_too_long", message)
    if info.frames > settings.video_max_frames:
        raise Refusal("video_too_long", f"the video has {info.frames} frames; at most {settings.video_max_frames}")
    if pixels > settings.video_max_frame_pixels:
        message = f"its frames are {info.width}x{info.height}; at most {settings.video_max_frame_pixels} pixels each"
        raise Refusal("video_too_large", message)
    if pixels * info.frames > settings.video_max_total_pixels:
        message = (
            f"its {info.frames} frames hold {pixels * info.frames} pixels; at most {settings.video_max_total_pixels}"
        )
        raise Refusal("video_too_large", message)


def _batch(path: Path, settings: Settings, side: int) -> Intake:
    limits = archives.Limits(settings.batch_max_files, settings.batch_max_bytes, settings.batch_max_ratio)
    entries = archives.inspect(path, limits)
    output = len(entries) * (_PICTURE_BYTES_PER_PIXEL * side * side + 1024)  # a result is at most side x side
    return Intake("batch", len(entries), (side, side), output, entries=entries)
