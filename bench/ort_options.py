"""The ONNX Runtime session options ``bench/model.py --ort-options`` times against the service's own.

Each variant changes one thing from ``animegan_api.weights.onnx_session_options``:
graph optimisation level (the service leaves ORT's default, all levels),
spinning threads, the memory arena, and parallel execution of independent
graph branches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort

from animegan_api.weights import onnx_session_options

Tweak = Callable[[Any], None]


def _level(level: Any) -> Tweak:
    def tweak(options: Any) -> None:
        options.graph_optimization_level = level

    return tweak


def _spinning(options: Any) -> None:
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")


def _arena(options: Any) -> None:
    options.enable_cpu_mem_arena = True


def _parallel(options: Any) -> None:
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 2


VARIANTS: dict[str, Tweak | None] = {
    "service (all optimisations)": None,
    "no graph optimisation": _level(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    "basic optimisations": _level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "extended optimisations": _level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "spinning threads": _spinning,
    "memory arena on": _arena,
    "parallel execution": _parallel,
}


def session(path: Path, threads: int, tweak: Tweak | None) -> Any:
    """A session built exactly as the service builds it, then changed by ``tweak``."""
    options = onnx_session_options(threads)
    if tweak is not None:
        tweak(options)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
