from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest

from animegan_api.serving.speed import SpeedEstimates, elements


def _nap(batch: np.ndarray) -> np.ndarray:
    threading.Event().wait(0.05)
    return batch


def test_a_model_is_expected_to_take_nothing_until_it_has_run() -> None:
    assert SpeedEstimates().expected_s(_nap, 1000) == 0.0


def test_timed_learns_seconds_per_element_and_scales_with_size() -> None:
    speed = SpeedEstimates()
    speed.timed(_nap, np.zeros((1, 3, 10, 10)))
    per_300 = speed.expected_s(_nap, 300)
    assert per_300 >= 0.05  # a wait never undershoots
    assert speed.expected_s(_nap, 600) == 2 * per_300


def test_estimates_move_smoothly_towards_new_measurements() -> None:
    speed = SpeedEstimates(smoothing=0.5)
    speed.record(_nap, 10, 1.0)
    speed.record(_nap, 10, 3.0)
    assert speed.expected_s(_nap, 10) == 2.0


def test_failures_teach_nothing() -> None:
    speed = SpeedEstimates()

    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError

    with contextlib.suppress(RuntimeError):
        speed.timed(broken, np.zeros(4))
    assert speed.expected_s(broken, 4) == 0.0


class _NoWeakref:
    __slots__ = ()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch


def test_callables_without_weak_references_are_never_learned() -> None:
    speed, model = SpeedEstimates(), _NoWeakref()
    speed.record(model, 1, 1.0)  # kept weakly so an unloaded model is forgotten; this one cannot be
    assert speed.expected_s(model, 1) == 0.0


def test_elements_counts_array_arguments_only() -> None:
    assert elements((np.zeros((2, 3)), 5, "x", np.zeros(4))) == 10


def test_cautious_estimate_adds_the_spread_of_the_measurements() -> None:
    speed = SpeedEstimates()

    def model() -> None: ...

    speed.record(model, 10, 1.0)  # 0.1 s per element, and a first spread of a tenth of that
    assert speed.cautious_s(model, 10) == pytest.approx(1.0 + 2 * 0.1)
    for seconds in [1.0] * 30:
        speed.record(model, 10, seconds)
    assert speed.cautious_s(model, 10) == pytest.approx(1.0, abs=1e-4)  # steady: no margin left
    for seconds in [0.6, 1.4] * 10:
        speed.record(model, 10, seconds)
    assert speed.cautious_s(model, 10) > speed.expected_s(model, 10) + 0.3  # noisy: a wide margin


def test_seed_teaches_only_a_model_that_has_not_run() -> None:
    speed = SpeedEstimates()

    def model() -> None: ...

    speed.seed(model, 100, 1.0)
    assert speed.expected_s(model, 100) == pytest.approx(1.0)
    speed.record(model, 100, 3.0)
    speed.seed(model, 100, 1.0)  # the warm-up's figure never overrides what requests measured
    assert speed.expected_s(model, 100) == pytest.approx(0.7 * 1.0 + 0.3 * 3.0)
