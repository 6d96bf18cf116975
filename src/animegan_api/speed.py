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

T = TypeVar("T")


class SpeedEstimates:
    """An exponential moving average of seconds per element, per model callable."""

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self._rates: weakref.WeakKeyDictionary[Callable[..., object], float] = weakref.WeakKeyDictionary()

    def expected_s(self, fn: Callable[..., object], elements: int) -> float:
        """Seconds ``fn`` is expected to take on inputs of ``elements`` elements (0 until it has run)."""
        try:
            return self._rates.get(fn, 0.0) * elements
        except TypeError:  # not weakly referenceable: never learned
            return 0.0

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
            self._rates[fn] = rate if previous is None else (1 - self.smoothing) * previous + self.smoothing * rate


def elements(args: tuple[object, ...]) -> int:
    """Input size the forward's cost scales with: the elements of the array arguments."""
    return sum(a.size for a in args if isinstance(a, np.ndarray))
