"""Reading videos with PyAV: only the uploaded file, only allowed demuxers, every frame with its timestamp, upright.

The demuxer is chosen from the file's own magic bytes and named to FFmpeg
explicitly, and the file reaches it as a Python file object: FFmpeg never
probes the format itself, so an HLS playlist or an ffconcat list (text that
names other files or URLs) can never be opened as one and nothing it names is
read. MOV's external data references stay off (FFmpeg's default).

Frames keep their presentation timestamps in the stream's own time base, so
29.97 fps stays 30000/1001 and a variable frame rate stays variable; a
display-matrix rotation is applied to the pixels so every frame is upright.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np

from animegan_api.failures import Refusal

__all__ = [
    "DEMUXERS",
    "Frame",
    "FrameStep",
    "VideoError",
    "VideoInfo",
    "container_format",
    "even_size",
    "file_format",
    "open_input",
    "probe",
    "read_frames",
]

DEMUXERS = {"mov": "MP4/MOV", "matroska": "Matroska/WebM"}
_MOV_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_EBML = b"\x1a\x45\xdf\xa3"


class VideoError(Refusal):
    """A video that cannot be read: ``invalid_video`` (truncated, corrupt, no picture stream)."""

    def __init__(self, message: str, code: str = "invalid_video") -> None:
        super().__init__(code, message)


def container_format(head: bytes) -> str | None:
    """The allowed demuxer for a file that starts with ``head``, or None: MP4/MOV boxes or Matroska's EBML magic."""
    if len(head) >= 8 and head[4:8] in _MOV_BOXES:
        return "mov"
    if head.startswith(_EBML):
        return "matroska"
    return None


def file_format(path: Path) -> str | None:
    """:func:`container_format` of a file's first bytes."""
    with path.open("rb") as handle:
        return container_format(handle.read(16))


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header (and its first frame) say, before any picture work."""

    format: str
    width: int  # as displayed: rotation applied
    height: int
    rotation: int  # counterclockwise degrees the stored pictures are turned for display (0, 90, 180, 270)
    frames: int  # from the header, or duration x rate where the container keeps no count
    duration_s: float
    rate: Fraction  # the average frame rate
    time_base: Fraction
    audio: tuple[str, ...]  # codec names of the sound streams, in order

    @property
    def stored_size(self) -> tuple[int, int]:
        """The size of the pictures as stored, before rotation."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


@dataclass(frozen=True)
class Frame:
    """One decoded frame at the processing size, upright, with its timestamp in the stream's time base."""

    rgb: np.ndarray  # HxWx3 uint8
    pts: int
    time_s: float


def open_input(path: Path, format: str) -> tuple[IO[bytes], Any]:
    """The file and its container, with the demuxer named; the caller closes both."""
    handle = path.open("rb")
    try:
        return handle, av.open(handle, mode="r", format=format)
    except (av.FFmpegError, ValueError, OSError) as exc:
        handle.close()
        raise VideoError(f"the video cannot be read ({_short(exc)})") from exc


def probe(path: Path, format: str) -> VideoInfo:
    """Read the header and decode the first frame (its rotation, and proof the stream decodes)."""
    handle, container = open_input(path, format)
    try:
        if not container.streams.video:
            raise VideoError("the file has no video stream")
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
        if stream.time_base is None or rate <= 0:
            raise VideoError("the video stream has no frame rate or time base")
        duration = _duration_s(container, stream)
        frames = stream.frames or math.ceil(duration * rate)
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.FFmpegError) as exc:
            raise VideoError("the video stream has no decodable frame") from exc
        rotation = round(first.rotation / 90) % 4 * 90
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        return VideoInfo(format, width, height, rotation, frames, duration, rate, Fraction(stream.time_base), audio)
    except av.FFmpegError as exc:
        raise VideoError(f"the video cannot be read ({_short(exc)})") from exc
    finally:
        container.close()
        handle.close()


class FrameStep:
    """Which frames an ``fps`` at most the source's keeps: evenly spread, on their own timestamps.

    A frame is kept when its time reaches the next slot; slots are ``1/fps``
    apart, and a gap in a variable-rate stream restarts them at the frame after it.
    """

    def __init__(self, fps: float | None) -> None:
        self.step = 1.0 / fps if fps else 0.0
        self._next: float | None = None

    def keep(self, time_s: float) -> bool:
        if not self.step:
            return True
        if self._next is not None and time_s < self._next - 1e-6:
            return False
        self._next = max((self._next or time_s) + self.step, time_s + self.step / 2)
        return True


def even_size(width: int, height: int) -> tuple[int, int]:
    """H.264 in 4:2:0 needs even sides: one row or column is cropped where a side is odd."""
    return max(2, width - width % 2), max(2, height - height % 2)


def read_frames(path: Path, info: VideoInfo, size: tuple[int, int], fps: float | None = None) -> Iterator[Frame]:
    """Every kept frame of the first video stream, scaled to ``size`` (upright) and as RGB.

    Raises :class:`VideoError` when the stream breaks off or ends well short of
    the frames its header promised (a truncated upload).
    """
    handle, container = open_input(path, info.format)
    step, decoded = FrameStep(fps), 0
    stored = (size[1], size[0]) if info.rotation % 180 else size
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # the model has the cores; one decoder thread keeps up
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts is None:
                continue
            seconds = float(frame.pts * info.time_base)
            if not step.keep(seconds):
                continue
            rgb = frame.to_ndarray(format="rgb24", width=stored[0], height=stored[1], interpolation="AREA")
            if info.rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, info.rotation // 90))
            yield Frame(rgb, frame.pts, seconds)
    except av.FFmpegError as exc:
        raise VideoError(f"the video breaks off after {decoded} frames ({_short(exc)})") from exc
    finally:
        container.close()
        handle.close()
    if decoded == 0 or (info.frames and decoded < info.frames * 0.9 - 1):
        raise VideoError(f"the video ends after {decoded} of the {info.frames} frames its header promises")


def _duration_s(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    raise VideoError("the video's duration is not known")


def _short(exc: BaseException) -> str:
    """FFmpeg's reason without the file name (a server path is nobody's business)."""
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return str(reason).splitlines()[0][:160]
