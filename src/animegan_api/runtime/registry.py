"""The styles a running service offers: model files grouped by style name, loaded on demand.

A style may exist as several files (a ``.pt`` and an ``.onnx`` of the same
weights); the ``backend`` setting picks which one runs, and a style that
exists in one format runs in that format. Models load eagerly at startup or
lazily on first use, with an LRU bound on how many stay loaded. A file that
cannot be loaded is recorded with its reason and never blocks the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from animegan_api.runtime.onnx_runtimes import OnnxRuntime, TorchRuntime
from animegan_api.runtime.precision import Precision
from animegan_api.runtime.predictors import LoadedStyle, load_style
from animegan_api.runtime.priority import at_priority
from animegan_api.runtime.weights import ModelFile, StyleSpec, WeightsError, discover

__all__ = ["Backend", "FailedFile", "StyleEntry", "StyleRegistry", "build_registry"]

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime"]
_FORMAT_FOR_BACKEND = {"torch": "torch", "onnxruntime": "onnx"}


@dataclass
class StyleEntry:
    """One style name: the file chosen to run it, and its load state."""

    name: str
    file: ModelFile
    formats: list[str]
    loaded: LoadedStyle | None = None
    error: str | None = None
    last_used: float = 0.0
    runtime_note: str | None = None  # why OpenVINO was given up for this style; its loads skip it from then on
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
    measure_memory: bool = False
    onnx_runtime: OnnxRuntime = "onnxruntime"
    torch_runtime: TorchRuntime = "pytorch"
    streams: int = 1  # forwards at once (the engine's workers)
    memory_profiles: Path | None = None
    nice: int = 0  # the inference threads' nice increment: loads run at it (runtime.priority)
    on_load: Callable[[str, float, str], None] | None = field(default=None, repr=False)
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
                onnx_runtime, torch_runtime = self.onnx_runtime, self.torch_runtime
                if entry.runtime_note is not None:
                    onnx_runtime, torch_runtime = "onnxruntime", "pytorch"
                try:
                    entry.loaded = at_priority(
                        self.nice,
                        load_style,
                        entry.file,
                        self.threads,
                        self.warmup_side,
                        self.precision,
                        self.check_batches,
                        self.measure_memory,
                        onnx_runtime,
                        self.streams,
                        self.memory_profiles,
                        torch_runtime,
                    )
                except WeightsError as exc:
                    entry.error = str(exc)
                    log.error("style %s not loaded: %s", entry.name, exc)
                    raise
                if entry.runtime_note is not None:
                    entry.loaded = dataclasses.replace(entry.loaded, runtime_note=entry.runtime_note)
                if self.on_load:
                    self.on_load(entry.name, entry.loaded.load_s, entry.loaded.runtime)
            entry.last_used = time.monotonic()
            self._evict(keep=entry)

    def load_without_openvino(self, entry: StyleEntry, why: str) -> None:
        """Load the entry again on its other runtime, and keep it off OpenVINO from now on.

        OpenVINO's compiled model keeps the buffers of the sizes it serves for
        as long as it lives; dropping it is the one way to get them back.
        """
        entry.runtime_note = why
        entry.loaded = None
        gc.collect()  # the compiled model and its buffers go with the last reference
        self.load(entry)

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
    measure_memory: bool = False,
    on_load: Callable[[str, float, str], None] | None = None,
    onnx_runtime: OnnxRuntime = "onnxruntime",
    streams: int = 1,
    memory_profiles: Path | None = None,
    torch_runtime: TorchRuntime = "pytorch",
    nice: int = 0,
) -> StyleRegistry:
    """Discover the folder, choose a file per style, and load eagerly unless ``lazy``."""
    files, problems = discover(folder)
    registry = StyleRegistry(
        failed_files=[FailedFile(p.path.name, p.path, p.reason) for p in problems],
        threads=threads,
        warmup_side=warmup_side,
        max_loaded=max_loaded,
        lazy=lazy,
        precision=precision,
        check_batches=check_batches or [],
        measure_memory=measure_memory,
        on_load=on_load,
        onnx_runtime=onnx_runtime,
        torch_runtime=torch_runtime,
        streams=streams,
        memory_profiles=memory_profiles,
        nice=nice,
    )
    for name, group in _group_by_name(files).items():
        registry.entries[name] = StyleEntry(name, _choose(group, backend), sorted({m.spec.format for m in group}))
    if default_style and default_style not in registry.entries:
        raise WeightsError(
            folder, f"default style {default_style!r} is not among the styles found {list(registry.entries)}"
        )
    if not lazy:
        for entry in list(registry.entries.values())[: max_loaded or None]:
            try:
                registry.load(entry)
            except WeightsError:
                continue
    registry.configured_default = default_style
    return registry


def _group_by_name(files: Iterable[ModelFile]) -> dict[str, list[ModelFile]]:
    groups: dict[str, list[ModelFile]] = {}
    for model_file in files:
        groups.setdefault(model_file.spec.name, []).append(model_file)
    return groups


def _choose(group: list[ModelFile], backend: Backend) -> ModelFile:
    preferred = [m for m in group if m.spec.format == _FORMAT_FOR_BACKEND[backend]]
    return (preferred or group)[0]
