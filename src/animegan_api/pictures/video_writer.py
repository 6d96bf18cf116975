"""Writing the result: H.264 ``yuv420p`` MP4 with ``faststart``, on the source's timestamps, with every sound stream.

Frames are encoded on the source's time base with the source's timestamps, so
the rate, any variable timing and the duration come through unchanged. Sound
is read from the source by a demuxer of the writer's own and muxed as the
video advances (interleaved, never held back to the end): streams MP4 carries
(AAC, MP3, AC-3, E-AC-3, ALAC) are copied packet for packet, bit-identical;
the others (Opus, Vorbis, PCM ...) are re-encoded to AAC.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from animegan_api.pictures.video import VideoError, VideoInfo, open_input

__all__ = ["COPIED_AUDIO", "VideoWriter"]

COPIED_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})
_AUDIO_LEAD_S = 0.5  # sound muxed this far ahead of the last video frame keeps the file interleaved


class VideoWriter:
    """An MP4 being written from upright RGB frames of one size; :meth:`close` finishes it."""

    def __init__(self, target: Path, source: Path, info: VideoInfo, size: tuple[int, int], rate: Fraction) -> None:
        self._output = av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._output.add_stream("libx264", rate=rate)
        self._video.width, self._video.height = size
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = info.time_base
        self._video.codec_context.time_base = info.time_base
        self._video.codec_context.thread_count = 1  # hidden behind the model's forward; leaves it the cores
        self._video.options = {"crf": "20", "preset": "veryfast"}
        self._time_base = info.time_base
        self._handle, self._source = open_input(source, info.format)
        self._audio: dict[int, tuple[Any, bool]] = {}
        for stream in self._source.streams.audio:
            self._audio[stream.index] = self._audio_stream(stream)
        self._packets = iter(self._source.demux(*self._source.streams.audio)) if self._audio else iter(())
        self._pending: Any = None
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one frame at ``pts`` (source time base), then the sound up to just after it."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, self._time_base
        for packet in self._video.encode(frame):
            self._output.mux(packet)
        self.frames += 1
        self._mux_audio(float(pts * self._time_base) + _AUDIO_LEAD_S)

    def close(self) -> None:
        """Flush the encoder, the rest of the sound, and write the index at the front of the file."""
        try:
            for packet in self._video.encode(None):
                self._output.mux(packet)
            self._mux_audio(None)
            for out, copied in self._audio.values():
                if not copied:
                    for packet in out.encode(None):
                        self._output.mux(packet)
        except av.FFmpegError as exc:
            raise VideoError(f"the sound cannot be carried over ({exc.strerror or type(exc).__name__})") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        """Close every file; what was written stays as it is (the caller removes a partial file)."""
        for closing in (self._output, self._source, self._handle):
            with contextlib.suppress(av.FFmpegError, OSError):
                closing.close()

    def _audio_stream(self, stream: Any) -> tuple[Any, bool]:
        if stream.codec_context.name in COPIED_AUDIO:
            return self._output.add_stream_from_template(stream), True
        context = stream.codec_context
        out = self._output.add_stream("aac", rate=context.sample_rate or 48_000)
        out.codec_context.layout = context.layout
        return out, False

    def _mux_audio(self, until_s: float | None) -> None:
        """Mux source sound packets up to ``until_s`` seconds (all that is left for None)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None:  # the demuxer's empty flush packet
                continue
            if until_s is not None and packet.pts is not None and float(packet.pts * packet.time_base) > until_s:
                self._pending = packet
                return
            out, copied = self._audio[packet.stream.index]
            if copied:
                packet.stream = out
                self._output.mux(packet)
                continue
            for frame in packet.decode():
                for encoded in out.encode(frame):
                    self._output.mux(encoded)
