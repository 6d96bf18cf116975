"""The styles a running service offers: model files grouped by style name, loaded on demand.

A style may exist as several files (a ``.pt`` and an ``.onnx`` of the same
weights); the ``backend`` setting picks which one runs, and a style that
exists in one format runs in that format. Models load eagerly at startup or
lazily on first use, with an LRU bound on how many stay loaded. A file that
cannot be loaded is recorded with its reason and never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from .weights import (
    ModelFile,
    OnnxSignature,
    StyleSpec,
    WeightsError,
    discover,
    load_generator,
    onnx_signature,
    open_onnx,
    sidecar_path,
    verify_checksum,
)

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime"]
Precision = Literal["fp32", "bf16"]
BF16_MIN_PSNR_DB = 35.0
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}
_FORMAT_FOR_BACKEND = {"torch": "torch", "onnxruntime": "onnx"}
_PROBED_MULTIPLES = (4, 8, 16, 32)


class Predictor(Protocol):
    """Maps an NCHW float32 batch in [-1, 1] to the generator's NCHW output batch."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchPredictor:
    """A generator run in channels_last memory format, in fp32 or under bf16 autocast.

    oneDNN's convolutions work on channels-last data; with NCHW tensors every
    convolution pays a reorder in and out. Channels-last makes the 512x512
    forward about 1.45x faster on a 2-core AVX2 EPYC (``bench/model.py
    --experiments``) with the same output (PSNR > 120 dB against NCHW).
    """

    def __init__(self, module: torch.nn.Module, bf16: bool = False) -> None:
        self.module = module.to(memory_format=torch.channels_last)
        self.bf16 = bf16

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            feed = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return self.module(feed).float().numpy()


class OnnxPredictor:
    """An ONNX Runtime session; NHWC graphs get transposed input and output."""

    def __init__(self, session: object, signature: OnnxSignature) -> None:
        self.session = session
        self.signature = signature

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.signature.fixed_batch == 1 and batch.shape[0] > 1:
            return np.concatenate([self(batch[i : i + 1]) for i in range(batch.shape[0])])
        nhwc = self.signature.layout == "NHWC"
        feed = np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if nhwc else batch
        (output,) = self.session.run([self.signature.output_name], {self.signature.input_name: feed})  # type: ignore[attr-defined]
        return output.transpose(0, 3, 1, 2) if nhwc else output


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

    @property
    def size_multiple(self) -> int:
        return self.spec.size_multiple or 1


@dataclass
class StyleEntry:
    """One style name: the file chosen to run it, and its load state."""

    name: str
    file: ModelFile
    formats: list[str]
    loaded: LoadedStyle | None = None
    error: str | None = None
    last_used: float = 0.0
    lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def spec(self) -> StyleSpec:
        return self.loaded.spec if self.loaded else self.file.spec


@dataclass(frozen=True)
class FailedFile:
    name: str
    path: Path
    reason: str


@dataclass
class StyleRegistry:
    """Styles by name plus the files that could not even be described."""

    entries: dict[str, StyleEntry] = field(default_factory=dict)
    failed_files: list[FailedFile] = field(default_factory=list)
    configured_default: str | None = None
    threads: int = 1
    warmup_side: int = 256
    max_loaded: int | None = None
    lazy: bool = False
    precision: Precision = "fp32"
    check_batches: list[np.ndarray] = field(default_factory=list, repr=False)
    on_load: Callable[[str, float], None] | None = field(default=None, repr=False)
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def names(self) -> list[str]:
        """Styles that can serve: loaded, or not yet tried."""
        return [name for name, entry in self.entries.items() if entry.error is None]

    @property
    def default_name(self) -> str | None:
        """The configured default, else the first style that can still serve."""
        return self.configured_default or next(iter(self.names), None)

    @property
    def ready(self) -> bool:
        if self.lazy:
            return bool(self.names)
        return any(entry.loaded for entry in self.entries.values())

    def lookup(self, name: str | None) -> StyleEntry | None:
        return self.entries.get(name or self.default_name or "")

    async def acquire(self, entry: StyleEntry) -> LoadedStyle:
        """The entry's loaded model, loading it now (off the event loop) if needed."""
        if entry.lock is None:
            entry.lock = asyncio.Lock()
        async with entry.lock:
            if entry.loaded is None:
                await asyncio.to_thread(self.load, entry)
        assert entry.loaded is not None
        entry.last_used = time.monotonic()
        return entry.loaded

    def load(self, entry: StyleEntry) -> None:
        """Load one entry (recording a failure on it) and evict the least recently used beyond the bound."""
        if entry.error is not None:
            raise WeightsError(entry.file.path, entry.error)
        with self._load_lock:
            if entry.loaded is None:
                try:
                    entry.loaded = load_style(entry.file, self.threads, self.warmup_side, self.precision, self.check_batches)
                except WeightsError as exc:
                    entry.error = str(exc)
                    log.error("style %s not loaded: %s", entry.name, exc)
                    raise
                if self.on_load:
                    self.on_load(entry.name, entry.loaded.load_s)
            entry.last_used = time.monotonic()
            self._evict(keep=entry)

    def _evict(self, keep: StyleEntry) -> None:
        if self.max_loaded is None:
            return
        loaded = sorted((e for e in self.entries.values() if e.loaded and e is not keep), key=lambda e: e.last_used)
        for entry in loaded[: max(0, len(loaded) + 1 - self.max_loaded)]:
            log.info("style %s unloaded (max_loaded_models=%d)", entry.name, self.max_loaded)
            entry.loaded = None  # requests already holding it finish with their own reference


def build_registry(
    folder: Path,
    *,
    backend: Backend = "torch",
    default_style: str | None = None,
    threads: int = 1,
    warmup_side: int = 256,
    lazy: bool = False,
    max_loaded: int | None = None,
    precision: Precision = "fp32",
    check_batches: list[np.ndarray] | None = None,
    on_load: Callable[[str, float], None] | None = None,
) -> StyleRegistry:
    """Discover the folder, choose a file per style, and load eagerly unless ``lazy``."""
    files, problems = discover(folder)
    registry = StyleRegistry(
        failed_files=[FailedFile(p.path.name, p.path, p.reason) for p in problems],
        threads=threads, warmup_side=warmup_side, max_loaded=max_loaded, lazy=lazy,
        precision=precision, check_batches=check_batches or [], on_load=on_load,
    )
    for name, group in _group_by_name(files).items():
        registry.entries[name] = StyleEntry(name, _choose(group, backend), sorted({m.spec.format for m in group}))
    if default_style and default_style not in registry.entries:
        raise WeightsError(folder, f"default style {default_style!r} is not among the styles found {list(registry.entries)}")
    if not lazy:
        for entry in list(registry.entries.values())[: max_loaded or None]:
            try:
                registry.load(entry)
            except WeightsError:
                continue
    registry.configured_default = default_style
    return registry


def load_style(
    model_file: ModelFile,
    threads: int,
    warmup_side: int,
    precision: Precision = "fp32",
    check_batches: list[np.ndarray] | None = None,
) -> LoadedStyle:
    """Load, complete the spec from the model itself, and warm up with a forward that proves the size rule.

    ``precision="bf16"`` is a request, not an order: see :func:`bf16_refusal`.
    """
    started, rss_before = time.perf_counter(), _rss_bytes()
    path, spec = model_file.path, model_file.spec
    verify_checksum(path, spec)
    if spec.format == "onnx":
        session = open_onnx(path, threads)
        signature = onnx_signature(path, session, spec)
        predictor: Predictor = OnnxPredictor(session, signature)
        parameters = None
        spec = spec.model_copy(update={
            "layout": signature.layout,
            "architecture": spec.architecture or ("animeganv3" if signature.layout == "NHWC" else "animeganv2"),
            "max_batch": spec.max_batch or signature.fixed_batch,
        })
    else:
        module = load_generator(path, spec)
        predictor = TorchPredictor(module)
        parameters = sum(p.numel() for p in module.parameters())
        spec = spec.model_copy(update={"layout": "NCHW", "architecture": "animeganv2"})
    spec = spec.model_copy(update={"size_multiple": _settle_multiple(path, spec, predictor, warmup_side)})
    active: Precision = "fp32"
    note = None
    if precision == "bf16":
        if isinstance(predictor, TorchPredictor):
            bf16 = TorchPredictor(predictor.module, bf16=True)
            note = bf16_refusal(predictor, bf16, check_batches or [_check_pattern()], cpu_has_bf16())
            predictor, active = (predictor, "fp32") if note else (bf16, "bf16")
        else:
            note = "bf16 applies to PyTorch files only; this style runs in ONNX Runtime"
        if note:
            log.warning("style %s stays fp32: %s", spec.name, note)
    elapsed = time.perf_counter() - started
    log.info("style %s loaded from %s and warmed in %.2f s (%s)", spec.name, path, elapsed, active)
    return LoadedStyle(spec, path, predictor, parameters, max(0, _rss_bytes() - rss_before), elapsed, active, note)


def bf16_refusal(fp32: Predictor, bf16: Predictor, batches: list[np.ndarray], cpu_bf16: bool) -> str | None:
    """Why this model must stay fp32, or None when bf16 may run.

    Without AVX-512 BF16 the CPU emulates bf16 and runs many times slower, so it
    is refused outright; with it, bf16 must stay within ``BF16_MIN_PSNR_DB`` of
    fp32 on every check picture, so a model that degrades is never served.
    """
    if not cpu_bf16:
        return "this CPU lacks AVX-512 BF16, where bf16 is emulated and many times slower than fp32"
    worst = min(psnr(fp32(batch), bf16(batch)) for batch in batches)
    if worst < BF16_MIN_PSNR_DB:
        return f"bf16 output is only {worst:.1f} dB PSNR from fp32 on the check pictures (needs {BF16_MIN_PSNR_DB:g})"
    return None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two generator outputs in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(4.0 / mse))


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = {flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return bool(flags & _BF16_CPU_FLAGS)


def _check_pattern(side: int = 128) -> np.ndarray:
    """A picture with gradients and edges, for when no check photos are configured."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rings = np.sin(40 * np.hypot(x - 0.5, y - 0.5))
    return np.stack([2 * x - 1, 2 * y - 1, rings])[None].astype(np.float32)


def _settle_multiple(path: Path, spec: StyleSpec, predictor: Predictor, warmup_side: int) -> int:
    """Warm up at a side that is an odd multiple of the size rule, so a wrong rule fails now, not per request.

    Without a stated rule, the smallest of 4, 8, 16, 32 the model accepts is taken.
    """
    candidates = (spec.size_multiple,) if spec.size_multiple else _PROBED_MULTIPLES
    failure: Exception | None = None
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
    raise WeightsError(where, f"{field_note}the model fails on a {side}x{side} input ({type(failure).__name__}: {str(failure)[:160]})")


def _odd_multiple(multiple: int, near: int) -> int:
    count = max(1, near // multiple)
    return multiple * (count if count % 2 else count + 1)


def _group_by_name(files: Iterable[ModelFile]) -> dict[str, list[ModelFile]]:
    groups: dict[str, list[ModelFile]] = {}
    for model_file in files:
        groups.setdefault(model_file.spec.name, []).append(model_file)
    return groups


def _choose(group: list[ModelFile], backend: Backend) -> ModelFile:
    preferred = [m for m in group if m.spec.format == _FORMAT_FOR_BACKEND[backend]]
    return (preferred or group)[0]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
