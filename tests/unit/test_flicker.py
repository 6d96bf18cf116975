"""Flicker: measured as the output's colour jumps beyond the source's, and smoothed without tinting new scenes."""

from __future__ import annotations

import numpy as np

from animegan_api.pictures.flicker import Deflicker, flicker, mean_colour, shimmer


def _flat(level: float, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), level, np.uint8)


def test_a_steady_offset_is_no_flicker_and_a_pumping_one_is() -> None:
    sources = [_flat(100 + i) for i in range(6)]
    steady = [_flat(120 + i) for i in range(6)]
    pumping = [_flat(120 + i + (8 if i % 2 else 0)) for i in range(6)]
    assert flicker(sources, steady) == 0
    assert flicker(sources, pumping) == 8


def test_deflicker_takes_most_of_the_pumping_out() -> None:
    smoother = Deflicker()
    sources = [_flat(100) for _ in range(30)]
    pumping = [_flat(120 + (8 if i % 2 else 0)) for i in range(30)]
    smoothed = [smoother(source, output) for source, output in zip(sources, pumping, strict=True)]
    assert flicker(sources, smoothed) < flicker(sources, pumping) / 4


def test_a_scene_cut_starts_the_average_again() -> None:
    smoother = Deflicker()
    for _ in range(10):
        smoother(_flat(40), _flat(60))
    after_cut = smoother(_flat(200), _flat(150))
    assert mean_colour(after_cut)[0] == 150  # the new scene's own colour, not pulled towards the old offset


def test_slow_changes_pass() -> None:
    smoother = Deflicker()
    outputs = [smoother(_flat(100), _flat(110 + i // 3)) for i in range(30)]
    assert abs(float(mean_colour(outputs[-1])[0]) - 119) <= 3


def test_shimmer_compares_the_output_motion_with_the_source_motion() -> None:
    sources = [_flat(100 + 2 * i) for i in range(5)]
    assert shimmer(sources, [_flat(50 + 2 * i) for i in range(5)]) == 1.0
    assert shimmer(sources, [_flat(50 + 6 * i) for i in range(5)]) == 3.0
