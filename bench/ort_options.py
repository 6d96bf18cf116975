"""The ONNX Runtime session options ``bench/model.py --ort-options`` times against the service's own.

The service runs a picture of this size in its arena session
(``animegan_api.runtime.weights.onnx_session_options(threads, arena=True)``, shrunk
after each run). Each variant changes one thing from that: no arena (the
session larger pictures use), graph optimisation level (the service leaves
ORT's default, all levels), ORT's per-shape memory pattern, spinning threads,
and parallel execution of independent graph branches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort

from animegan_api.runtime.onnx_runtimes import OnnxPredictor
from animegan_api.runtime.weights import onnx_session_options, onnx_signature, read_spec

Tweak = Callable[[Any], None]


def _level(level: Any) -> Tweak:
    def tweak(options: Any) -> None:
        options.graph_optimization_level = level

    return tweak


def _spinning(options: Any) -> None:
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")


def _no_arena(options: Any) -> None:
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = True


def _pattern(options: Any) -> None:
    options.enable_mem_pattern = True


def _parallel(options: Any) -> None:
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 2


VARIANTS: dict[str, Tweak | None] = {
    "service (arena, shrunk per run)": None,
    "no memory arena": _no_arena,
    "memory pattern on": _pattern,
    "no graph optimisation": _level(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    "basic optimisations": _level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "extended optimisations": _level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "spinning threads": _spinning,
    "parallel execution": _parallel,
}


def predictor(path: Path, threads: int, tweak: Tweak | None, pixels: int) -> OnnxPredictor:
    """The service's predictor for pictures up to ``pixels``, its arena session's options changed by ``tweak``."""
    options = onnx_session_options(threads, arena=True)
    if tweak is not None:
        tweak(options)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    signature = onnx_signature(path, session, read_spec(path))
    if not options.enable_cpu_mem_arena:
        return OnnxPredictor(session, signature)
    return OnnxPredictor(session, signature, arena=session, arena_pixels=pixels)
