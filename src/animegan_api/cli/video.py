"""Offline video conversion (``animegan-api convert clip.mp4 -o out.mp4``): the job's frame pipeline, no service.

The same :func:`~animegan_api.serving.jobs.video_work.convert_video` a video
job runs, with the forwards in the calling thread and a progress bar over
frames; decoding and encoding still run on their own threads beside it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from animegan_api.failures import Refusal
from animegan_api.pictures.video import file_format, probe
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.jobs.video_work import VideoRequest, convert_video, expected_frames

__all__ = ["convert_video_file", "is_video", "video_target"]


def is_video(path: Path) -> bool:
    """Whether the file is a video the service reads, from its magic bytes."""
    return file_format(path) is not None


def video_target(source: Path, output: Path, single: bool) -> Path:
    """``-o out.mp4`` names the file for one video; otherwise ``-o`` is a folder and the name is the source's."""
    if single and output.suffix.lower() == ".mp4":
        return output
    return output / (source.stem + ".mp4")


def convert_video_file(
    style: LoadedStyle, source: Path, target: Path, side: int, fps: float | None, deflicker: bool
) -> str | None:
    """Convert one video; None when done, else why it failed."""
    fmt = file_format(source)
    assert fmt is not None
    try:
        info = probe(source, fmt)
        request = VideoRequest(source, info, style, side, fps, deflicker)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tqdm(total=expected_frames(info, fps), unit="frame", desc=source.name, file=sys.stderr) as bar:
            asyncio.run(convert_video(request, target, _forward, progress=lambda _: bar.update()))
    except Refusal as exc:
        return f"{source}: {exc.message}"
    except OSError as exc:
        return f"{source}: {exc}"
    return None


async def _forward(style: LoadedStyle, batch: np.ndarray) -> np.ndarray:
    return style.predictor(batch)
