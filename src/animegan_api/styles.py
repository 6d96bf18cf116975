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
_FORMAT_FOR_BACKEND = {"torch": "torch", "onnxruntime": "onnx"}
_PROBED_MULTIPLES = (4, 8, 16, 32)


class Predictor(Protocol):
    """Maps an NCHW float32 batch in [-1, 1] to the generator's NCHW output batch."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchPredictor:
    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).numpy()


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
                    entry.loaded = load_style(entry.file, self.threads, self.warmup_side)
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
    on_load: Callable[[str, float], None] | None = None,
) -> StyleRegistry:
    """Discover the folder, choose a file per style, and load eagerly unless ``lazy``."""
    files, problems = discover(folder)
    registry = StyleRegistry(
        failed_files=[FailedFile(p.path.name, p.path, p.reason) for p in problems],
        threads=threads, warmup_side=warmup_side, max_loaded=max_loaded, lazy=lazy, on_load=on_load,
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


def load_style(model_file: ModelFile, threads: int, warmup_side: int) -> LoadedStyle:
    """Load, complete the spec from the model itself, and warm up with a forward that proves the size rule."""
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
    elapsed = time.perf_counter() - started
    log.info("style %s loaded from %s and warmed in %.2f s", spec.name, path, elapsed)
    return LoadedStyle(spec, path, predictor, parameters, max(0, _rss_bytes() - rss_before), elapsed)


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
