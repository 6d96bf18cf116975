"""How long each model takes: seconds per input element, learned from its own forwards.

The engine asks before a forward whether the request can still finish by
its deadline; a forward nobody will receive is time taken from requests
that could.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["SpeedEstimates", "elements"]

T = TypeVar("T")


class SpeedEstimates:
    """Exponential moving averages of seconds per element and of its spread, per model callable.

    The spread is the mean absolute deviation, as TCP estimates round-trip
    times: on a shared 2-core machine the same forward varies by a quarter.
    """

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self._rates: weakref.WeakKeyDictionary[Callable[..., object], float] = weakref.WeakKeyDictionary()
        self._spreads: weakref.WeakKeyDictionary[Callable[..., object], float] = weakref.WeakKeyDictionary()

    def expected_s(self, fn: Callable[..., object], elements: int) -> float:
        """Seconds ``fn`` is expected to take on inputs of ``elements`` elements (0 until it has run)."""
        try:
            return self._rates.get(fn, 0.0) * elements
        except TypeError:  # not weakly referenceable: never learned
            return 0.0

    def cautious_s(self, fn: Callable[..., object], elements: int, spreads: float = 2.0) -> float:
        """The expectation plus ``spreads`` deviations: what admission promises a deadline on."""
        try:
            return (self._rates.get(fn, 0.0) + spreads * self._spreads.get(fn, 0.0)) * elements
        except TypeError:
            return 0.0

    def seed(self, fn: Callable[..., object], elements: int, seconds: float) -> None:
        """Learn from a measurement made elsewhere (the warm-up), unless real forwards already taught us."""
        with contextlib.suppress(TypeError):
            if fn not in self._rates and elements:
                self.record(fn, elements, seconds)

    def timed(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` and learn from its duration; failures teach nothing."""
        started = time.perf_counter()
        result = fn(*args)
        if count := elements(args):
            self.record(fn, count, time.perf_counter() - started)
        return result

    def record(self, fn: Callable[..., object], count: int, seconds: float) -> None:
        rate = seconds / count
        with contextlib.suppress(TypeError):
            previous = self._rates.get(fn)
            if previous is None:
                self._rates[fn], self._spreads[fn] = rate, rate / 10  # one figure: assume a 10% spread
                return
            alpha = self.smoothing
            self._spreads[fn] = (1 - alpha) * self._spreads.get(fn, 0.0) + alpha * abs(rate - previous)
            self._rates[fn] = (1 - alpha) * previous + alpha * rate


def elements(args: tuple[object, ...]) -> int:
    """Input size the forward's cost scales with: the elements of the array arguments."""
    return sum(a.size for a in args if isinstance(a, np.ndarray))
