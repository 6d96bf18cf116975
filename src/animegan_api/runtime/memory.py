"""The process's memory: its limit, what one forward costs, and handing freed memory back.

The default budget is the container's memory limit less headroom (or a
share of physical memory without one); :mod:`animegan_api.serving.budget`
holds requests to it.

A style's working memory is known when it loads. The PyTorch strip forward
works it out from its own layer shapes (:func:`strip_memory.peak_bytes`);
other models are measured: two forwards at two sizes, each after handing
cached memory back to the system, each read from the peak resident set. ONNX
Runtime's cost per pixel falls a little as pictures grow, so the line through
two small sizes over-predicts large ones: the safe side. An ONNX style's
arena session serves only the sizes it was measured at and below, so its
cost is two lines (:class:`SplitCost`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = [
    "Cost",
    "LinearCost",
    "MiB",
    "SplitCost",
    "calibrate",
    "calibrated_pixels",
    "container_limit",
    "default_budget",
    "fix_mmap_threshold",
    "give_back",
    "held_cost",
    "peak_since_reset",
    "resident_bytes",
    "start_peak_window",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
HEADROOM_SHARE, HEADROOM_MIN = 0.10, 256 * MiB
_PHYSICAL_SHARE = 0.75
_MIN_CALIBRATION_SIDE = 64
_CGROUP_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a huge number


def container_limit() -> int | None:
    """The cgroup's memory limit in bytes (v2, then v1), or None where there is none."""
    for path in _CGROUP_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _NO_LIMIT:
            return int(text)
        return None
    return None


def _physical_memory() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_budget(limit: int | None = None, physical: int | None = None) -> int:
    """The limit less max(10%, 256 MiB) of headroom; without a limit, 75% of physical memory."""
    if limit is not None:
        return max(limit - max(int(limit * HEADROOM_SHARE), HEADROOM_MIN), limit // 2)
    return int((physical or _physical_memory()) * _PHYSICAL_SHARE)


def resident_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def _status_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def start_peak_window() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_since_reset() -> int:
    """The peak resident set (bytes) since :func:`start_peak_window`, or since the process began."""
    return _status_kib("VmHWM") * 1024


def give_back() -> None:
    """Return memory the allocator keeps after a large picture to the system (glibc's malloc_trim)."""
    trim = getattr(_c_library(), "malloc_trim", None)
    if trim is not None:
        trim(0)


_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 8 * MiB


def fix_mmap_threshold() -> None:
    """Pin glibc's mmap threshold at 8 MiB, so a forward's memory is the same in every process.

    glibc raises the threshold to the size of each mapped block freed, up to
    32 MiB, so mid-sized blocks went either to the heap, where freed ones stay
    resident, or to their own mappings, depending on what ran before: the
    strip forward's peak at 768x432 came out at 358-470 MiB between processes.
    Pinned at 8 MiB it came out at 298 MiB every time, what its layer shapes
    say (:mod:`strip_memory`); at 16 MiB the heap still kept up to 105 MiB
    more at 640x360, and at 4 MiB forwards ran slower (fresh pages for every
    block). Called before the models load, so their measurements see it too.
    """
    mallopt = getattr(_c_library(), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


@cache
def _c_library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


class Cost(Protocol):
    """Predicted working memory of one forward on a picture of this size."""

    def forward_bytes(self, width: int, height: int) -> int: ...


@dataclass(frozen=True)
class LinearCost:
    """``fixed + per_pixel * pixels`` bytes: measured for a model whose memory cannot be worked out."""

    fixed: int
    per_pixel: float

    def forward_bytes(self, width: int, height: int) -> int:
        return int(self.fixed + self.per_pixel * width * height)


@dataclass(frozen=True)
class SplitCost:
    """Pictures up to ``pixels`` measured on one runtime session, larger ones on another.

    Above the split the cost never falls below the small side's at the
    split, so it grows with the picture and a search for the largest side
    that fits stays valid.
    """

    small: LinearCost
    large: Cost
    pixels: int

    def forward_bytes(self, width: int, height: int) -> int:
        small = self.small.forward_bytes(min(width * height, self.pixels), 1)
        return small if width * height <= self.pixels else max(small, self.large.forward_bytes(width, height))


_HELD_SLACK = 32 * MiB


def held_cost(measured: LinearCost | None) -> LinearCost | None:
    """A runtime that keeps its buffers between forwards (OpenVINO): what one more forward adds, measured
    once they are held (1-3 MiB), plus 32 MiB for what that reading misses (the output copy, a new shape)."""
    if measured is None:
        return None
    return LinearCost(fixed=measured.fixed + _HELD_SLACK, per_pixel=measured.per_pixel)


def calibrated_pixels(side: int) -> int:
    """Pixels of the largest picture :func:`calibrate` measures for a warm-up ``side`` (at any size rule)."""
    return (2 * max(_MIN_CALIBRATION_SIDE, side)) ** 2


def calibrate(forward: Callable[[np.ndarray], object], multiple: int, side: int = 256) -> LinearCost | None:
    """Measure one predictor's working memory at ``side`` and twice that; None where the peak cannot be read.

    Larger sides predict large pictures better (AnimeGANv3 Hayao's cost falls
    from 886 B a pixel at 1024x576 to 658 at 2048x1152) and take longer at startup.
    """
    points = []
    base = max(_MIN_CALIBRATION_SIDE, side)
    for edge in (max(multiple, base // multiple * multiple), max(multiple, 2 * base // multiple * multiple)):
        batch = np.zeros((1, 3, edge, edge), dtype=np.float32)
        give_back()
        before = resident_bytes()
        if not start_peak_window():
            return None
        forward(batch)
        points.append((edge * edge, max(0, peak_since_reset() - before)))
    (p1, b1), (p2, b2) = points
    per_pixel = max((b2 - b1) / (p2 - p1), b2 / p2 / 4)  # never below a quarter of the mean: noise is not a gift
    give_back()
    return LinearCost(fixed=max(0, int(b2 - per_pixel * p2)), per_pixel=per_pixel)
