"""A video through the model: decoding, the forwards and encoding overlapped, so the model never waits for them.

Decoding runs one frame ahead on a thread of its own, encoding one frame
behind on another; the forwards go through the gate (the engine for a job,
the calling thread for ``animegan-api convert``). Every frame keeps its
timestamp, the sound is carried over by the writer, and a stop (cancel,
shutdown, a broken stream) removes the partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from animegan_api.pictures import imaging
from animegan_api.pictures.flicker import Deflicker
from animegan_api.pictures.video import Frame, VideoInfo, even_size, read_frames
from animegan_api.pictures.video_writer import VideoWriter
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.priority import lower_priority

__all__ = ["Forward", "VideoRequest", "convert_video", "expected_frames", "output_rate", "processing_size"]


class Forward(Protocol):
    def __call__(self, style: LoadedStyle, batch: np.ndarray) -> Awaitable[np.ndarray]: ...


@dataclass(frozen=True)
class VideoRequest:
    """One video's conversion: the source, what its header said, the style, and the options."""

    source: Path
    info: VideoInfo
    style: LoadedStyle
    side: int
    fps: float | None = None
    deflicker: bool = False
    nice: int = 0  # the decoding and encoding threads' nice increment: the inference threads' in the service

    @property
    def size(self) -> tuple[int, int]:
        return processing_size(self.info, self.side, self.style.size_multiple)


def processing_size(info: VideoInfo, side: int, multiple: int) -> tuple[int, int]:
    """The frames' size into the model: the longest side at most ``side``, on the style's multiple, and even."""
    width, height = imaging.plan_size(info.width, info.height, side, multiple)
    return even_size(width, height)


def output_rate(rate: Fraction, fps: float | None) -> Fraction:
    """The result's nominal rate: the source's, or ``fps`` when that is lower."""
    if fps is None or fps >= rate:
        return rate
    return Fraction(fps).limit_denominator(1001)


def expected_frames(info: VideoInfo, fps: float | None) -> int:
    """Frames the result will have: the source's, or its share at ``fps``."""
    if fps is None or fps >= info.rate:
        return info.frames
    return max(1, math.ceil(info.frames * fps / float(info.rate)))


async def convert_video(
    request: VideoRequest,
    target: Path,
    forward: Forward,
    check: Callable[[], None] = lambda: None,
    progress: Callable[[int], None] = lambda done: None,
) -> int:
    """Write ``request``'s result to ``target``; returns the frames written. ``check`` raises to stop."""
    loop = asyncio.get_running_loop()
    info, size = request.info, request.size
    with (
        ThreadPoolExecutor(1, "animegan-video-read", lower_priority, (request.nice,)) as reading,
        ThreadPoolExecutor(1, "animegan-video-write", lower_priority, (request.nice,)) as writing,
    ):
        frames = read_frames(request.source, info, size, request.fps)
        rate = output_rate(info.rate, request.fps)
        writer = await loop.run_in_executor(writing, VideoWriter, target, request.source, info, size, rate)
        smoother = Deflicker() if request.deflicker else None
        reading_next = loop.run_in_executor(reading, _next_input, frames)
        written: asyncio.Future[None] | None = None
        done = 0
        try:
            while (item := await reading_next) is not None:
                frame, batch = item
                reading_next = loop.run_in_executor(reading, _next_input, frames)
                check()
                output = await forward(request.style, batch)
                if written is not None:
                    await written
                written = loop.run_in_executor(writing, _write, writer, smoother, frame, output[0])
                done += 1
                progress(done)
            if written is not None:
                await written
            await loop.run_in_executor(writing, writer.close)
        except BaseException:
            await _settle(reading_next, written)
            await loop.run_in_executor(reading, frames.close)  # type: ignore[attr-defined]
            await loop.run_in_executor(writing, writer.abort)
            target.unlink(missing_ok=True)
            raise
    return done


def _next_input(frames: Iterator[Frame]) -> tuple[Frame, np.ndarray] | None:
    """The next frame and its batch, made on the reading thread."""
    frame = next(frames, None)
    if frame is None:
        return None
    batch = (frame.rgb.transpose(2, 0, 1)[None] / np.float32(127.5) - 1.0).astype(np.float32, copy=False)
    return frame, batch


def _write(writer: VideoWriter, smoother: Deflicker | None, frame: Frame, output: np.ndarray) -> None:
    """The model's output back to 8-bit RGB, its colour steadied, encoded: on the writing thread."""
    rgb = np.rint(np.clip((output.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)).astype(np.uint8)
    if smoother is not None:
        rgb = smoother(frame.rgb, rgb)
    writer.write(rgb, frame.pts)


async def _settle(*pending: asyncio.Future[Any] | None) -> None:
    """Let work already handed to the threads finish (its errors are beside the point now)."""
    for future in pending:
        if future is not None:
            with contextlib.suppress(BaseException):
                await future
