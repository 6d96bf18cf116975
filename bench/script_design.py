"""The AnimeGANv3 video script's design, step for step, with PyAV and PIL in place of OpenCV and the ffmpeg CLI.

``tools/video2anime.py`` in TachibanaYoshino/AnimeGANv3, as published:

1. a reader thread decodes the clip at its own size and resizes every frame to the model's size with
   PIL's Lanczos filter into the float tensor, queueing up to 100 frames ahead;
2. the main thread runs the model one frame at a time, turns the output back into 8-bit RGB and writes
   it with OpenCV's ``mp4v`` writer (FFmpeg's MPEG-4 Part 2 encoder);
3. then ``ffmpeg -i clip -y sound.mp3`` (the sound to MP3, downmixed to what LAME takes) and
   ``ffmpeg -i sound.mp3 -i video.mp4 -y result.mp4``, which with ffmpeg's defaults encodes the video
   again (libx264, preset medium, CRF 23) and the sound again (AAC).

One step is left out, in the script's favour: it resizes every result frame back to the source's size
(Lanczos) before writing; here frames are written at the model's size, as the service writes them, so
both do the same model work and write the same number of pixels.

The model step runs either on the service's own predictor (the design alone, nothing else different) or,
for an AnimeGANv3 ONNX file, as the script runs it (``published_forward``): an ONNX Runtime session on
the file as it is, ``CPUExecutionProvider`` with the default session options, fed NHWC.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

__all__ = ["published_forward", "run_script_design"]

Forward = Callable[[np.ndarray], np.ndarray]


def published_forward(model: Path) -> Forward:
    """The script's own model step: ``ort.InferenceSession(path, providers=["CPUExecutionProvider"])`` on the
    file as published (no folded graph, default threads), NCHW in and out like the service's predictor."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = session.run(None, {name: np.ascontiguousarray(batch.transpose(0, 2, 3, 1))})[0]
        return output.transpose(0, 3, 1, 2)

    forward(np.zeros((1, 3, 256, 256), np.float32))
    return forward


def run_script_design(
    forward: Forward, clip: Path, size: tuple[int, int], folder: Path, tag: str = "script"
) -> dict[str, float]:
    """The whole design on ``clip`` at ``size`` (width, height); frames and seconds, as bench/video.py reports."""
    began = time.perf_counter()
    silent, sound, result = folder / f"{tag}_silent.mp4", folder / f"{tag}_sound.mp3", folder / f"{tag}_result.mp4"
    frames = _convert(forward, clip, size, silent)
    _sound_to_mp3(clip, sound)
    _merge(sound, silent, result)
    seconds = time.perf_counter() - began
    print(f"AnimeGANv3 script design ({tag}): {frames} frames in {seconds:.1f} s", flush=True)
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 3)}


def _convert(forward: Forward, clip: Path, size: tuple[int, int], target: Path) -> int:
    """Steps 1 and 2: the reader thread's queue, the model frame by frame, the ``mp4v`` writer."""
    ready: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=100)
    reader = threading.Thread(target=_read, args=(clip, size, ready), daemon=True)
    reader.start()
    frames = 0
    with av.open(str(clip)) as source, av.open(str(target), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(source.streams.video[0].average_rate))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        while (batch := ready.get()) is not None:
            output = forward(batch)[0]
            pixels = ((output.transpose(1, 2, 0) + 1.0) / 2 * 255).clip(0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            frames += 1
        out.mux(stream.encode(None))
    reader.join()
    return frames


def _read(clip: Path, size: tuple[int, int], ready: queue.Queue[np.ndarray | None]) -> None:
    with av.open(str(clip)) as source:
        for frame in source.decode(video=0):
            picture = Image.fromarray(frame.to_ndarray(format="rgb24")).resize(size, Image.Resampling.LANCZOS)
            ready.put((np.asarray(picture).astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None])
    ready.put(None)


def _sound_to_mp3(clip: Path, target: Path) -> None:
    """``ffmpeg -i clip -y sound.mp3``: every audio frame through LAME (stereo at most)."""
    with av.open(str(clip)) as source, av.open(str(target), "w") as out:
        audio = source.streams.audio[0]
        mp3 = out.add_stream("libmp3lame", rate=audio.codec_context.sample_rate)
        mp3.codec_context.layout = "stereo" if audio.codec_context.channels > 1 else "mono"
        _transcode(source.decode(audio), mp3, out)


def _merge(sound: Path, video: Path, target: Path) -> None:
    """``ffmpeg -i sound.mp3 -i video.mp4 -y result.mp4``: the video encoded again (libx264's defaults), the
    sound to AAC."""
    with av.open(str(sound)) as mp3, av.open(str(video)) as silent, av.open(str(target), "w") as out:
        source = silent.streams.video[0]
        h264 = out.add_stream("libx264", rate=Fraction(source.average_rate))
        h264.width, h264.height, h264.pix_fmt = source.codec_context.width, source.codec_context.height, "yuv420p"
        h264.options = {"preset": "medium", "crf": "23"}
        aac = out.add_stream("aac", rate=mp3.streams.audio[0].codec_context.sample_rate)
        aac.codec_context.layout = mp3.streams.audio[0].codec_context.layout
        _transcode(silent.decode(source), h264, out, renumber=True)
        _transcode(mp3.decode(audio=0), aac, out)


def _transcode(frames: Any, stream: Any, out: Any, renumber: bool = False) -> None:
    for index, frame in enumerate(frames):
        if renumber:  # the encoder's own frame clock, as ffmpeg gives it
            frame.pts, frame.time_base = index, 1 / Fraction(stream.average_rate)
            frame.pict_type = av.video.frame.PictureType.NONE
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
