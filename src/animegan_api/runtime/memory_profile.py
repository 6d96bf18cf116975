"""An ONNX style's memory at the sizes it serves, measured once per machine and read at load.

Why: ONNX Runtime's cost per pixel is not a line. AnimeGANv3 Hayao's plain
session used 2440 B a pixel at 512x288, 1190 at 1024x576, 800 at 2048x1152
and 656 at 2048x2048, and AnimeGANv2's graph grew the other way (two small
sizes measured at load under-predicted 2048 px by 20-38%); the same model on
one machine gives the same figures within 2-17%. So large pictures are
sized by what forwards at those very sizes used: ``animegan-api
memory-profile`` runs each size in fresh processes (:func:`measure_forward`),
keeps the largest reading, and writes one JSON file per model, which the
service reads when ``ANIMEGAN_MEMORY_PROFILE_DIR`` names their folder. A profile only counts
for the file, thread count, ONNX Runtime and graph rewrite (:mod:`onnx_graph`) it was measured with.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animegan_api.runtime.memory import (
    fix_mmap_threshold,
    give_back,
    peak_since_reset,
    resident_bytes,
    start_peak_window,
)
from animegan_api.runtime.onnx_graph import GRAPH_REVISION
from animegan_api.runtime.onnx_runtimes import OnnxPredictor
from animegan_api.runtime.weights import onnx_signature, open_onnx, read_spec, sha256_of

__all__ = ["MARGIN", "MeasuredCost", "measure_forward", "profile_path", "read_profile", "write_profile"]

log = logging.getLogger(__name__)

MARGIN = 0.15  # over the largest of a few readings: one size's peak varied by up to 17% between processes
_SUFFIX = ".memory.json"


@dataclass(frozen=True)
class MeasuredCost:
    """Forward bytes measured at some sizes: between two, the line joining them; beyond the largest, its
    bytes per pixel (which fall as pictures grow); below the smallest, the smallest's. Plus ``margin``.

    Each point's bytes are raised to the largest of any smaller size, so the
    cost never falls as a picture grows (a search for the largest side that
    fits stays valid).
    """

    points: tuple[tuple[int, int], ...]  # (pixels, bytes): sorted and made rising here, once
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a measured cost needs at least one point")
        object.__setattr__(self, "points", _rising(self.points))  # not per call: admission asks many times

    def forward_bytes(self, width: int, height: int) -> int:
        pixels, points = width * height, self.points
        low_pixels, low_bytes = points[0]
        if pixels <= low_pixels:
            return int(low_bytes * (1 + self.margin))
        for high_pixels, high_bytes in points[1:]:
            if pixels <= high_pixels:
                share = (pixels - low_pixels) / (high_pixels - low_pixels)
                return int((low_bytes + share * (high_bytes - low_bytes)) * (1 + self.margin))
            low_pixels, low_bytes = high_pixels, high_bytes
        return int(low_bytes / low_pixels * pixels * (1 + self.margin))


def _rising(points: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    rising, most = [], 0
    for pixels, nbytes in sorted(points):
        most = max(most, nbytes)
        rising.append((pixels, most))
    return tuple(rising)


def _onnx_runtime_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def profile_path(folder: Path, model: Path) -> Path:
    return folder / (model.name + _SUFFIX)


def write_profile(folder: Path, model: Path, threads: int, points: list[tuple[int, int, int]]) -> Path:
    """Save ``(width, height, bytes)`` measurements of ``model`` on ``threads`` threads; the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "model": model.name,
        "sha256": sha256_of(model),
        "threads": threads,
        "onnxruntime": _onnx_runtime_version(),
        "session": "plain",
        "graph": GRAPH_REVISION,
        "points": [{"width": w, "height": h, "bytes": b} for w, h, b in sorted(points, key=lambda p: p[0] * p[1])],
    }
    path = profile_path(folder, model)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_profile(folder: Path, model: Path, threads: int) -> MeasuredCost | None:
    """The profile of ``model`` in ``folder`` if it was measured for this very file, thread count, ONNX
    Runtime and graph rewrite; None (and a warning saying why) otherwise."""
    path = profile_path(folder, model)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        found = (document["sha256"], document["threads"], document["onnxruntime"], document.get("graph"))
        points = tuple((int(p["width"]) * int(p["height"]), int(p["bytes"])) for p in document["points"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("memory profile %s not used: unreadable (%s)", path, exc)
        return None
    wanted = (sha256_of(model), threads, _onnx_runtime_version(), GRAPH_REVISION)
    if found != wanted or not points:
        log.warning("memory profile %s not used: measured for %s, this is %s", path, found, wanted)
        return None
    return MeasuredCost(points)


def measure_forward(model: Path, width: int, height: int, threads: int, warmup_side: int = 256) -> int:
    """Bytes one forward of ``width`` x ``height`` adds to this process's peak resident set, on the session
    the service runs large pictures in, after a warm-up forward as at load. Run it in a fresh process."""
    fix_mmap_threshold()  # the allocator the service runs with
    session = open_onnx(model, threads)
    predictor = OnnxPredictor(session, onnx_signature(model, session, read_spec(model)))
    predictor(np.zeros((1, 3, warmup_side, warmup_side), dtype=np.float32))
    batch = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    give_back()
    before = resident_bytes()
    start_peak_window()
    predictor(batch)
    return max(0, peak_since_reset() - before)
