"""The styles a running service offers: loaded, warmed generators by name.

Loading happens once at startup. A file that cannot be loaded is recorded
with its reason instead of stopping the service, so one bad download does not
take the other styles down with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .weights import ModelFile, StyleSpec, WeightsError, discover, load_generator

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """Maps an NCHW float32 batch in [-1, 1] to the generator's output batch."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchPredictor:
    """A PyTorch generator behind the :class:`Predictor` interface."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).numpy()


@dataclass(frozen=True)
class LoadedStyle:
    spec: StyleSpec
    path: Path
    predictor: Predictor
    parameters: int
    load_s: float


@dataclass(frozen=True)
class FailedStyle:
    name: str
    path: Path
    reason: str


@dataclass
class StyleRegistry:
    """Loaded styles by name, in discovery order, plus the files that failed."""

    styles: dict[str, LoadedStyle] = field(default_factory=dict)
    failed: list[FailedStyle] = field(default_factory=list)
    default_name: str | None = None

    def get(self, name: str | None) -> LoadedStyle | None:
        return self.styles.get(name or self.default_name or "")

    @property
    def names(self) -> list[str]:
        return list(self.styles)


def load_registry(folder: Path, default_style: str | None, warmup_side: int) -> StyleRegistry:
    """Load and warm every model in ``folder``; the first one is the default unless configured."""
    files, problems = discover(folder)
    registry = StyleRegistry(failed=[FailedStyle(p.path.name, p.path, p.reason) for p in problems])
    for model_file in files:
        if model_file.spec.name in registry.styles:
            log.warning("style %s: %s ignored, already served by another file", model_file.spec.name, model_file.path)
            continue
        try:
            registry.styles[model_file.spec.name] = load_style(model_file, warmup_side)
        except WeightsError as exc:
            log.error("style %s not loaded: %s", model_file.spec.name, exc)
            registry.failed.append(FailedStyle(model_file.spec.name, exc.path, exc.reason))
    if default_style and default_style not in registry.styles:
        raise WeightsError(folder, f"default style {default_style!r} is not among the loaded styles {registry.names}")
    registry.default_name = default_style or next(iter(registry.styles), None)
    return registry


def load_style(model_file: ModelFile, warmup_side: int) -> LoadedStyle:
    """Load one model and run a warm-up forward so the first request does not pay for it."""
    started = time.perf_counter()
    module = load_generator(model_file.path, model_file.spec)
    predictor = TorchPredictor(module)
    side = max(model_file.spec.size_multiple, warmup_side // model_file.spec.size_multiple * model_file.spec.size_multiple)
    predictor(np.zeros((1, 3, side, side), dtype=np.float32))
    elapsed = time.perf_counter() - started
    log.info("style %s loaded from %s and warmed in %.2f s", model_file.spec.name, model_file.path, elapsed)
    return LoadedStyle(
        spec=model_file.spec,
        path=model_file.path,
        predictor=predictor,
        parameters=sum(p.numel() for p in module.parameters()),
        load_s=elapsed,
    )
