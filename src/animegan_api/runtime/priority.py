"""The inference threads' priority, and the runtimes' own worker threads made at that priority.

The service lowers the nice value of the threads that run forwards, so the
event loop, refusals and picture work get a core the moment they need one.
A forward on ONNX Runtime or OpenVINO does not run on that thread alone: the
calling thread shares each layer with worker threads the runtime made when
the model was loaded (ONNX Runtime's intra-op pool per session, OpenVINO's
TBB workers once per process), and Linux gives a new thread the nice value of
the thread that makes it. Loaded from a thread at normal priority, those
workers outranked the niced caller, and every layer waited at its barrier for
the caller's part: a video job's AnimeGANv3 forwards ran 20-40% slower in the
server than in a plain process. Loading at the inference priority
(:func:`at_priority`) gives every thread of a forward the same one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["at_priority", "lower_priority"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def lower_priority(increment: int) -> None:
    """Raise this thread's nice value by ``increment`` (threads it makes later inherit it); 0 does nothing."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + increment)
    except OSError as exc:
        log.warning("could not lower this thread's priority: %s", exc)


def at_priority(increment: int, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a fresh thread niced by ``increment`` (here, when 0), so the threads it makes are too."""
    if increment <= 0:
        return fn(*args)
    with ThreadPoolExecutor(1, "animegan-load", lower_priority, (increment,)) as pool:
        return pool.submit(fn, *args).result()
