"""ONNX styles on either runtime: ONNX Runtime, or OpenVINO, and the choice between them.

Both run the same file at the same fixed thread count in f32. OpenVINO is
compiled for this CPU once at load; its CPU plugin takes any picture size
without a recompile (a new shape's first forward builds its kernels once and
keeps them; ``bench/onnx_runtimes.py`` measures what that costs). Its precision is
pinned to f32: on CPUs with AMX it would otherwise pick bf16 by itself, which
only the precision policy and its quality check may allow.

``ANIMEGAN_ONNX_RUNTIME=auto`` times both on the warm-up picture at load and
keeps the faster per style (:func:`fastest`). OpenVINO also runs the
AnimeGANv2 PyTorch generator, converted at load (:func:`convert_torch`), and
``ANIMEGAN_TORCH_RUNTIME=auto`` chooses between it and PyTorch the same way.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from animegan_api.runtime.weights import OnnxSignature, WeightsError, arena_run_options, served_graph

__all__ = [
    "OnnxPredictor",
    "OnnxRuntime",
    "OpenVinoPredictor",
    "TorchRuntime",
    "convert_torch",
    "fastest",
    "open_openvino",
]

OnnxRuntime = Literal["auto", "onnxruntime", "openvino"]
TorchRuntime = Literal["auto", "pytorch", "openvino"]


class OnnxPredictor:
    """ONNX Runtime sessions of one model; NHWC graphs get transposed input and output.

    Pictures up to ``arena_pixels`` run in ``arena``, a session with ORT's
    memory arena that is shrunk after every run: AnimeGANv3 Hayao serves 512 px
    pictures 1.28x faster through it (``bench/RESULTS.md``). Its memory is
    measured up to that size and no further (at 2048 px it peaks 20% above the
    line through the measured sizes), so larger pictures run in ``session``,
    which allocates each tensor afresh and whose line over-predicts them.
    """

    runtime = "onnxruntime"

    def __init__(self, session: Any, signature: OnnxSignature, arena: Any | None = None, arena_pixels: int = 0) -> None:
        self.session = session
        self.signature = signature
        self.arena = arena
        self.arena_pixels = arena_pixels if arena is not None else 0
        self._shrink = arena_run_options() if arena is not None else None

    @property
    def plain(self) -> OnnxPredictor:
        """The same model without the arena session, for every size."""
        return OnnxPredictor(self.session, self.signature)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.signature.fixed_batch == 1 and batch.shape[0] > 1:
            return np.concatenate([self(batch[i : i + 1]) for i in range(batch.shape[0])])
        feed = _feed(batch, self.signature)
        session, options = self.session, None
        if self.arena is not None and batch.shape[2] * batch.shape[3] <= self.arena_pixels:
            session, options = self.arena, self._shrink
        (output,) = session.run([self.signature.output_name], {self.signature.input_name: feed}, options)
        return _nchw(output, self.signature)


class OpenVinoPredictor:
    """A model compiled by OpenVINO for this CPU, for pictures up to ``keep_pixels``; ``large`` above.

    The compiled model keeps the memory of the largest picture it has run for
    as long as it lives (a new inference request, dropping the old one, or
    ``malloc_trim`` do not get it back: +820 MiB after one 2048x1152 forward of
    AnimeGANv3 Cute). So it only runs pictures up to the size whose memory was
    measured at load, which the budget counts as resident from startup; larger
    ones go to ``large``, whose memory goes back after each forward: an ONNX
    Runtime session without an arena, or the PyTorch strip forward. Each
    forward takes an inference request from a small pool (one per forward
    running at once; one costs about 0.1 ms to make).
    """

    runtime = "openvino"

    def __init__(
        self, compiled: Any, signature: OnnxSignature, keep_pixels: int, large: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        self.compiled, self.signature, self.keep_pixels, self.large = compiled, signature, keep_pixels, large
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[2] * batch.shape[3] > self.keep_pixels:
            return self.large(batch)
        if self.signature.fixed_batch == 1 and batch.shape[0] > 1:
            return np.concatenate([self(batch[i : i + 1]) for i in range(batch.shape[0])])
        with self._lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            request.infer({0: _feed(batch, self.signature)})
            output = np.array(request.get_output_tensor(0).data)  # a copy: the request's buffer is reused
        finally:
            with self._lock:
                self._idle.append(request)
        return _nchw(output, self.signature)


def open_openvino(path: Path, threads: int, streams: int = 1, graph: bytes | None = None) -> Any:
    """The file (``graph``, read from ``path`` when not given) compiled by OpenVINO for this CPU:
    ``streams`` forwards at once (the service's W) of ``threads`` threads each, f32, threads not pinned
    (the service's other threads share the cores); a file OpenVINO cannot read is a WeightsError."""
    import openvino as ov

    try:
        model = ov.Core().read_model(graph if graph is not None else served_graph(path))
    except Exception as exc:  # OpenVINO's ONNX frontend raises RuntimeError with its own text
        raise WeightsError(path, f"OpenVINO cannot read it ({type(exc).__name__}: {str(exc)[:160]})") from exc
    return _compile(model, path, threads, streams)


def convert_torch(module: torch.nn.Module, path: Path, threads: int, streams: int = 1) -> Any:
    """A PyTorch generator traced by OpenVINO's converter and compiled like :func:`open_openvino`.

    The trace takes any batch and picture size; the generator's size rule
    (multiples of 4) keeps it on the path traced (the exact 2x upsampling).
    """
    import openvino as ov

    try:
        with warnings.catch_warnings():  # the tracer's notes: the 2x test is traced as fixed (the size rule
            warnings.simplefilter("ignore")  # keeps it true), and torch.jit is deprecated (the converter's choice)
            model = ov.convert_model(
                module, example_input=torch.zeros(1, 3, 64, 64), input=[ov.PartialShape([-1, 3, -1, -1])]
            )
    except Exception as exc:  # the converter's own error types
        raise WeightsError(path, f"OpenVINO cannot convert it ({type(exc).__name__}: {str(exc)[:160]})") from exc
    return _compile(model, path, threads, streams)


def _compile(model: Any, path: Path, threads: int, streams: int) -> Any:
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": threads * streams,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    try:
        return ov.Core().compile_model(model, "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError with its own text for bad graphs
        raise WeightsError(path, f"OpenVINO cannot compile it ({type(exc).__name__}: {str(exc)[:160]})") from exc


def fastest(candidates: Sequence[Any], side: int, runs: int = 2) -> tuple[Any, dict[str, float]]:
    """The candidate whose best warm forward at ``side`` x ``side`` is the shortest, and every candidate's.

    Each runs once untimed first (a new shape's kernels are built then).
    """
    batch = np.zeros((1, 3, side, side), dtype=np.float32)
    seconds: dict[str, float] = {}
    for candidate in candidates:
        candidate(batch)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            candidate(batch)
            times.append(time.perf_counter() - started)
        seconds[candidate.runtime] = min(times)
    best = min(candidates, key=lambda candidate: seconds[candidate.runtime])
    return best, seconds


def _feed(batch: np.ndarray, signature: OnnxSignature) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if signature.layout == "NHWC" else batch


def _nchw(output: np.ndarray, signature: OnnxSignature) -> np.ndarray:
    result: np.ndarray = output.transpose(0, 3, 1, 2) if signature.layout == "NHWC" else output
    return result
