"""Stand-in models whose forwards end when the test says so, not when a clock does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class Gate:
    """Blocks every call until :meth:`open`; counts calls and how many ran at once; output = input * 2 by default."""

    def __init__(self, fail: bool = False, output: Callable[[Any], Any] = lambda value: value * 2) -> None:
        self.fail = fail
        self.output = output
        self.inputs: list[Any] = []
        self.running = 0
        self.max_running = 0
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()

    def __call__(self, value: Any) -> Any:
        with self._lock:
            self.inputs.append(value)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self._loop.call_soon_threadsafe(self._progress.set)
        try:
            assert self._open.wait(timeout=10), "the test never opened the gate"
            if self.fail:
                raise RuntimeError("model exploded")
            return self.output(value)
        finally:
            with self._lock:
                self.running -= 1

    @property
    def batch_sizes(self) -> list[int]:
        return [int(v.shape[0]) for v in self.inputs if isinstance(v, np.ndarray)]

    def open(self) -> None:
        self._open.set()

    async def started(self, count: int) -> None:
        """Wait until ``count`` forwards have begun."""
        async with asyncio.timeout(5):
            while len(self.inputs) < count:
                self._progress.clear()
                await self._progress.wait()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition`` holds: waiting on state, never on a guessed duration."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)
