"""Flicker: colour that pumps between frames of a restyled video, measured and smoothed.

A GAN generator restyles each frame alone, and AnimeGANv2's GroupNorm takes
its statistics per frame, so the output's mean colour can jump between frames
whose sources barely differ. The measure here is that jump with the source's
own change taken out: the frame-to-frame change of (output mean colour -
source mean colour), per channel, in 8-bit levels.

:class:`Deflicker` removes it causally, one frame at a time: each frame's
colour offset from its source is pulled towards a running average of the
offsets before it, so slow changes of the scene pass and frame-to-frame
pumping does not. A cut (a large change of the source itself) starts the
average again, so a new scene is never tinted by the old one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["Deflicker", "flicker", "mean_colour", "shimmer"]

_CUT_LEVELS = 24.0  # a source mean-colour jump this large (8-bit levels) is a scene cut


def mean_colour(rgb: np.ndarray) -> np.ndarray:
    """The mean colour of an HxWx3 picture, per channel."""
    return np.asarray(rgb.reshape(-1, 3).mean(axis=0), dtype=np.float64)


def flicker(sources: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """Mean frame-to-frame change of the output's mean colour beyond the source's, in 8-bit levels."""
    if len(sources) < 2:
        return 0.0
    offsets = np.array([mean_colour(out) - mean_colour(src) for src, out in zip(sources, outputs, strict=True)])
    return float(np.abs(np.diff(offsets, axis=0)).mean())


def shimmer(sources: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """How much more the output changes between frames than the source: mean |frame difference|, output / source.

    1 means the output moves exactly as much as the source; texture that the
    model redraws differently on every frame (shimmer) raises it.
    """
    if len(sources) < 2:
        return 1.0
    source = np.mean([np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(sources)])
    output = np.mean([np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(outputs)])
    return float(output / max(float(source), 1e-6))


class Deflicker:
    """Pulls each output frame's colour offset from its source towards the running average of the offsets."""

    def __init__(self, smoothing: float = 0.15) -> None:
        self.smoothing = smoothing  # weight of the newest frame in the running average
        self._offset: np.ndarray | None = None
        self._source: np.ndarray | None = None

    def __call__(self, source: np.ndarray, output: np.ndarray) -> np.ndarray:
        """``output`` (HxWx3 uint8, the size of ``source``) with its mean colour offset smoothed."""
        source_mean = mean_colour(source)
        offset = mean_colour(output) - source_mean
        cut = self._source is not None and float(np.abs(source_mean - self._source).max()) > _CUT_LEVELS
        if self._offset is None or cut:
            self._offset = offset
        else:
            self._offset = (1 - self.smoothing) * self._offset + self.smoothing * offset
        self._source = source_mean
        shift = self._offset - offset
        if float(np.abs(shift).max()) < 0.5:
            return output
        shifted: np.ndarray = np.clip(output.astype(np.int16) + np.rint(shift).astype(np.int16), 0, 255)
        return shifted.astype(np.uint8)
