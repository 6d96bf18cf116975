"""Predictors: a model file turned into a warmed callable from an NCHW batch to an NCHW batch.

Loading completes the file's description from the model itself (layout and
fixed batch from an ONNX graph, the size rule from a warm-up forward), so a
sidecar that contradicts the model fails at load, never per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from animegan_api.runtime import precision as _precision
from animegan_api.runtime.memory import (
    Cost,
    SplitCost,
    calibrate,
    calibrated_pixels,
    give_back,
    held_cost,
    resident_bytes,
)
from animegan_api.runtime.memory_profile import MeasuredCost, read_profile
from animegan_api.runtime.model import Generator
from animegan_api.runtime.onnx_runtimes import (
    OnnxPredictor,
    OnnxRuntime,
    OpenVinoPredictor,
    TorchRuntime,
    convert_torch,
    fastest,
    open_openvino,
)
from animegan_api.runtime.precision import Precision
from animegan_api.runtime.quantize import QuantizeError, int8_session
from animegan_api.runtime.strip_memory import StripCost
from animegan_api.runtime.tiling import StripForward
from animegan_api.runtime.weights import (
    ModelFile,
    OnnxSignature,
    StyleSpec,
    WeightsError,
    load_generator,
    onnx_signature,
    open_onnx,
    served_graph,
    sidecar_path,
    verify_checksum,
)

__all__ = ["LoadedStyle", "Predictor", "TorchPredictor", "apply_precision", "load_style"]

log = logging.getLogger(__name__)

_PROBED_MULTIPLES = (4, 8, 16, 32)
_TORCH_SIGNATURE = OnnxSignature("x", "y", "NCHW", None, None)  # how the converted generator is called


class Predictor(Protocol):
    """Maps an NCHW float32 batch in [-1, 1] to the generator's NCHW output batch."""

    runtime: str  # pytorch, onnxruntime or openvino

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchPredictor:
    """A generator run in channels_last memory format, strip by strip in fp32, or whole under bf16 autocast.

    oneDNN's convolutions work on channels-last data; with NCHW tensors every
    convolution pays a reorder in and out. Channels-last makes the 512x512
    forward about 1.45x faster on a 2-core AVX2 EPYC (``bench/model.py
    --experiments``) with the same output (PSNR > 120 dB against NCHW).

    The fp32 AnimeGANv2 forward runs as :class:`~animegan_api.runtime.tiling.StripForward`:
    the same picture (PSNR > 90 dB against the whole-picture forward) in a
    fraction of the memory, and no slower at any size measured (128 to 2048 px).
    """

    runtime = "pytorch"

    def __init__(self, module: torch.nn.Module, bf16: bool = False) -> None:
        self.module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.bf16 = bf16
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.module
        if isinstance(module, Generator) and not bf16:
            self.forward = StripForward(module)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            feed = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            output: np.ndarray = self.forward(feed).float().numpy()
            return output


@dataclass(frozen=True)
class LoadedStyle:
    """A warmed model and the complete description it runs with."""

    spec: StyleSpec
    path: Path
    predictor: Predictor
    parameters: int | None
    memory_bytes: int
    load_s: float
    precision: Precision = "fp32"
    precision_note: str | None = None
    cost: Cost | None = None  # working memory of one forward, measured at load when a budget is kept
    warm_timing: tuple[int, float] | None = None  # (input elements, seconds) of a warm forward at load
    runtime: str = "pytorch"  # what runs the forward: pytorch, onnxruntime or openvino
    runtime_seconds: dict[str, float] | None = None  # each runtime's warm forward when `auto` chose between them
    runtime_note: str | None = None  # why `auto` gave OpenVINO up for this style (the memory budget)

    @property
    def size_multiple(self) -> int:
        return self.spec.size_multiple or 1


def load_style(
    model_file: ModelFile,
    threads: int,
    warmup_side: int,
    precision: Precision = "fp32",
    check_batches: list[np.ndarray] | None = None,
    measure_memory: bool = False,
    onnx_runtime: OnnxRuntime = "onnxruntime",
    streams: int = 1,
    memory_profiles: Path | None = None,
    torch_runtime: TorchRuntime = "pytorch",
) -> LoadedStyle:
    """Load, complete the spec from the model itself, and warm up with a forward that proves the size rule.

    ``precision`` other than fp32 is a request, not an order: see :func:`apply_precision`. An ONNX file
    runs in ``onnx_runtime``, a PyTorch file in ``torch_runtime``; ``auto`` loads it in both and keeps the
    faster at the warm-up side. ``streams`` is how many forwards run at once (OpenVINO runs that many side
    by side, ``threads`` threads each).
    An ONNX style's large pictures are sized by its profile in ``memory_profiles`` where one matches.
    """
    started, rss_before = time.perf_counter(), resident_bytes()
    path = model_file.path
    verify_checksum(path, model_file.spec)
    if precision == "int8" and onnx_runtime == "auto":
        onnx_runtime = "onnxruntime"  # int8 is ONNX Runtime's quantiser's
    if precision == "bf16" and torch_runtime == "auto":
        torch_runtime = "pytorch"  # bf16 is PyTorch's autocast
    runtime = onnx_runtime if model_file.spec.format == "onnx" else torch_runtime
    candidates, spec, parameters = _open(model_file, threads, warmup_side, runtime, streams)
    spec = spec.model_copy(update={"size_multiple": _settle_multiple(path, spec, candidates[0], warmup_side)})
    side = _odd_multiple(spec.size_multiple or 1, warmup_side)  # the warm-up picture's
    predictor, seconds = candidates[0], None
    if len(candidates) > 1:
        predictor, seconds = fastest(candidates, side)
        log.info("style %s runs in %s (warm forward, s: %s)", spec.name, predictor.runtime, seconds)
        candidates.clear()
        give_back()  # the runtime not kept, and its buffers
    predictor, active, note = apply_precision(predictor, precision, check_batches, path, threads)
    if note:
        log.warning("style %s stays fp32: %s", spec.name, note)
    profile = read_profile(memory_profiles, path, threads) if memory_profiles and measure_memory else None
    cost = _memory_cost(predictor, spec.size_multiple or 1, warmup_side, profile) if measure_memory else None
    if seconds is not None and predictor.runtime in seconds:  # auto timed it warm at this side already
        timing = (3 * side * side, seconds[predictor.runtime])
    else:
        timing = _warm_timing(predictor, side)
    elapsed = time.perf_counter() - started
    log.info("style %s loaded from %s and warmed in %.2f s (%s, %s)", spec.name, path, elapsed, active, cost)
    memory = max(0, resident_bytes() - rss_before)
    return LoadedStyle(
        spec, path, predictor, parameters, memory, elapsed, active, note, cost, timing, predictor.runtime, seconds
    )


def apply_precision(
    predictor: Predictor, wanted: Precision, check_batches: list[np.ndarray] | None, path: Path, threads: int
) -> tuple[Predictor, Precision, str | None]:
    """The predictor to serve, the precision it runs in, and why ``wanted`` was refused (None when it was not).

    See :mod:`~animegan_api.runtime.precision` for the policy: the instructions, then the quality line.
    """
    if wanted == "fp32":
        return predictor, "fp32", None
    batches = check_batches or [_precision.check_pattern()]
    candidate = _reduced_copy(predictor, wanted, batches, path, threads)
    if isinstance(candidate, str):
        return predictor, "fp32", candidate
    note = _precision.quality_refusal(predictor, candidate, batches, wanted)
    return (predictor, "fp32", note) if note else (candidate, wanted, None)


def _reduced_copy(
    predictor: Predictor, wanted: Precision, batches: list[np.ndarray], path: Path, threads: int
) -> Predictor | str:
    """The reduced-precision copy to check, or why there is none."""
    runtime = {"bf16": TorchPredictor, "int8": OnnxPredictor}[wanted]
    if not isinstance(predictor, runtime):
        kind = "PyTorch files" if wanted == "bf16" else "ONNX files run by ONNX Runtime"
        other = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}.get(predictor.runtime, "PyTorch")
        return f"{wanted} applies to {kind} only; this style runs in {other}"
    if missing := _precision.missing_instructions(wanted):
        return missing
    if isinstance(predictor, TorchPredictor):
        return TorchPredictor(predictor.module, bf16=True)
    assert isinstance(predictor, OnnxPredictor)
    try:
        return OnnxPredictor(int8_session(path, predictor.signature, batches, threads), predictor.signature)
    except QuantizeError as exc:
        return str(exc)


def _warm_timing(predictor: Predictor, side: int) -> tuple[int, float]:
    """One more forward, warm this time: the speed admission predicts with until real requests teach it."""
    batch = np.zeros((1, 3, side, side), dtype=np.float32)
    started = time.perf_counter()
    predictor(batch)
    return batch.size, time.perf_counter() - started


def _memory_cost(predictor: Predictor, multiple: int, side: int, profile: MeasuredCost | None) -> Cost | None:
    """Worked out from the strip forward's shapes, or measured at the warm-up side and twice that.

    An ONNX style with an arena session is measured on each session: the
    arena's for the sizes it serves, the plain one's for everything larger
    (or its ``profile``, measured at those larger sizes); one on OpenVINO
    likewise, OpenVINO's and the plain session's (or the strip forward's, for
    a PyTorch file). OpenVINO holds its buffers for the measured sizes from
    the first measurement on (in the resident set the budget starts from), so
    its side costs what a second measurement adds.
    """
    if isinstance(predictor, TorchPredictor) and isinstance(predictor.forward, StripForward):
        return StripCost(predictor.forward)
    if isinstance(predictor, OnnxPredictor) and predictor.arena is not None:
        small, large = calibrate(predictor, multiple, side), profile or calibrate(predictor.plain, multiple, side)
        return SplitCost(small, large, predictor.arena_pixels) if small and large else None
    if isinstance(predictor, OpenVinoPredictor):
        calibrate(predictor, multiple, side)  # OpenVINO keeps these buffers from now on: counted as resident
        small = held_cost(calibrate(predictor, multiple, side))  # what a forward adds on top of them
        rest: Cost | None = profile  # else an ONNX Runtime session's, or the strip forward's of a converted .pt
        if rest is None and isinstance(predictor.large, OnnxPredictor | TorchPredictor):
            rest = _memory_cost(predictor.large, multiple, side, None)
        return SplitCost(small, rest, predictor.keep_pixels) if small and rest else None
    return profile or calibrate(predictor, multiple, side)


def _open(
    model_file: ModelFile, threads: int, warmup_side: int, runtime: OnnxRuntime | TorchRuntime, streams: int
) -> tuple[list[Predictor], StyleSpec, int | None]:
    """The file's predictors to choose from, its spec completed from the model, its parameter count (PyTorch)."""
    path, spec = model_file.path, model_file.spec
    if spec.format == "onnx":
        graph = served_graph(path)  # read and folded once for every session below
        session = open_onnx(path, threads, graph=graph)  # ONNX Runtime reads the signature, whichever runtime serves
        signature = onnx_signature(path, session, spec)
        spec = spec.model_copy(
            update={
                "layout": signature.layout,
                "architecture": spec.architecture or ("animeganv3" if signature.layout == "NHWC" else "animeganv2"),
                "max_batch": spec.max_batch or signature.fixed_batch,
            }
        )
        candidates: list[Predictor] = []
        if runtime != "openvino":
            arena = open_onnx(path, threads, arena=True, graph=graph)
            candidates.append(OnnxPredictor(session, signature, arena, calibrated_pixels(warmup_side)))
        if runtime != "onnxruntime":
            compiled = open_openvino(path, threads, streams, graph)
            large = OnnxPredictor(session, signature)  # no arena: its memory goes back after each forward
            candidates.append(OpenVinoPredictor(compiled, signature, calibrated_pixels(warmup_side), large))
        return candidates, spec, None
    module = load_generator(path, spec)
    spec = spec.model_copy(update={"layout": "NCHW", "architecture": "animeganv2"})
    strips = TorchPredictor(module)
    candidates = [strips] if runtime != "openvino" else []
    if runtime != "pytorch":
        compiled = convert_torch(module, path, threads, streams)
        candidates.append(OpenVinoPredictor(compiled, _TORCH_SIGNATURE, calibrated_pixels(warmup_side), strips))
    return candidates, spec, sum(p.numel() for p in module.parameters())


def _settle_multiple(path: Path, spec: StyleSpec, predictor: Predictor, warmup_side: int) -> int:
    """Warm up at a side that is an odd multiple of the size rule, so a wrong rule fails now, not per request.

    Without a stated rule, the smallest of 4, 8, 16, 32 the model accepts is taken.
    """
    candidates = (spec.size_multiple,) if spec.size_multiple else _PROBED_MULTIPLES
    failure: Exception | None = None
    side = warmup_side
    for multiple in candidates:
        side = _odd_multiple(multiple, warmup_side)
        try:
            output = predictor(np.zeros((1, 3, side, side), dtype=np.float32))
        except Exception as exc:  # the runtime's own error types
            failure = exc
            continue
        if output.shape != (1, 3, side, side):
            raise WeightsError(path, f"output shape {output.shape} does not match input (1, 3, {side}, {side})")
        return multiple
    where = sidecar_path(path) if spec.size_multiple else path
    field_note = "field 'size_multiple': " if spec.size_multiple else ""
    raise WeightsError(
        where, f"{field_note}the model fails on a {side}x{side} input ({type(failure).__name__}: {str(failure)[:160]})"
    )


def _odd_multiple(multiple: int, near: int) -> int:
    count = max(1, near // multiple)
    return multiple * (count if count % 2 else count + 1)
