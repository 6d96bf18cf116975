"""Clips the tests make themselves with PyAV: rates, timestamps, rotation, sizes and sound chosen per test."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_clip", "moving_pattern"]


def moving_pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """A frame whose content moves with ``index``: a gradient, a bright square, and a marker in the top-left corner."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), np.full_like(x, 90)], -1)
    frame = frame.astype(np.uint8)
    left = (index * 3) % max(1, width - 8)
    frame[height // 3 : height // 3 + 8, left : left + 8] = 255
    frame[: max(2, height // 6), : max(2, width // 6)] = (255, 0, 0)  # red marks the upright top-left
    return frame


def make_clip(
    path: Path,
    size: tuple[int, int] = (64, 48),
    frames: int = 12,
    rate: Fraction = Fraction(25),
    times: Sequence[float] | None = None,
    container: str = "mp4",
    codec: str = "libx264",
    audio: str | None = None,
    audio_channels: int = 2,
    rotation: int = 0,
    faststart: bool = False,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write a clip: ``times`` (seconds) make it variable-rate; ``audio`` names a sound codec (a tone)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container, options=options) as out:
        time_base = Fraction(1, 90_000) if times is not None else 1 / rate
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = size
        video.pix_fmt = pix_fmt  # yuv444p allows odd sides
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = _audio_stream(out, audio, audio_channels) if audio else None
        stamps = [round(t / time_base) for t in times] if times is not None else list(range(frames))
        for index, pts in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(moving_pattern(index, size), format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = pts, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            seconds = float(stamps[-1] * time_base) + float(1 / rate)
            _write_tone(out, sound, seconds)
    return path


def _audio_stream(out: av.container.OutputContainer, codec: str, channels: int) -> av.audio.stream.AudioStream:
    stream = out.add_stream(codec, rate=48_000)
    stream.codec_context.layout = "stereo" if channels == 2 else "mono"
    return stream


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    samples, rate = 960, 48_000
    channels = stream.codec_context.layout.nb_channels
    for start in range(0, int(seconds * rate), samples):
        t = (np.arange(samples) + start) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(
            np.tile(tone, (channels, 1)), format="fltp", layout=stream.codec_context.layout
        )
        frame.sample_rate, frame.pts = rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
