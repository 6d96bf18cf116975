"""Fitting the loaded styles to the memory budget: what stays resident, and OpenVINO's held buffers.

OpenVINO keeps the buffers of the sizes it serves for as long as its compiled
model lives, so they count as resident. Under a tight budget they can leave a
style no room for the largest picture its settings admit, although the same
styles on ONNX Runtime (or PyTorch) fit: then ``auto`` gives OpenVINO up,
style by style, the one holding most first, until every style fits or none
is left on it. Serving every admitted size comes before the last 10-20% of speed.
"""

from __future__ import annotations

import contextlib
import logging

from animegan_api.runtime.memory import MiB, give_back, resident_bytes
from animegan_api.runtime.registry import StyleEntry, StyleRegistry
from animegan_api.runtime.weights import WeightsError
from animegan_api.serving.budget import Budget
from animegan_api.serving.sizing import largest_square_side

__all__ = ["fit_openvino", "settle_baseline"]

log = logging.getLogger(__name__)


def settle_baseline(budget: Budget, cache_bytes: int) -> None:
    """The baseline as resident now (the loaded models; running requests hold the rest) plus the cache's bound."""
    give_back()
    budget.baseline = max(0, resident_bytes() - budget.reserved) + cache_bytes


def fit_openvino(registry: StyleRegistry, budget: Budget, limit: int, cache_bytes: int) -> None:
    """Move styles off OpenVINO (``auto``'s choice only) while some style has no room for a ``limit``-px square.

    The square of ``max_side_limit`` is the largest picture the settings
    admit, and what ``GET /v1/limits`` reports against. Lazy registries are
    left as they are: their models load one by one, after this count.
    """
    if registry.lazy:
        return
    while short := _short(registry, budget.capacity, limit):
        held = [entry for entry in registry.entries.values() if _auto_openvino(registry, entry)]
        if not held:
            return
        entry = max(held, key=lambda entry: entry.loaded.memory_bytes if entry.loaded else 0)
        why = _why(entry, short, limit)
        log.warning("style %s moves off OpenVINO: %s", entry.name, why)
        with contextlib.suppress(WeightsError):  # recorded on the entry and logged; the others still count
            registry.load_without_openvino(entry, why)
        settle_baseline(budget, cache_bytes)


def _short(registry: StyleRegistry, capacity: int, limit: int) -> list[str]:
    """Loaded styles whose ``limit``-px square does not fit ``capacity``."""
    return [
        entry.name
        for entry in registry.entries.values()
        if entry.loaded and largest_square_side([entry.loaded], capacity, limit) < limit
    ]


def _auto_openvino(registry: StyleRegistry, entry: StyleEntry) -> bool:
    """Whether the entry runs on OpenVINO because ``auto`` chose it (a forced runtime is the operator's)."""
    if entry.loaded is None or entry.loaded.runtime != "openvino":
        return False
    setting = registry.onnx_runtime if entry.file.spec.format == "onnx" else registry.torch_runtime
    return setting == "auto"


def _why(entry: StyleEntry, short: list[str], limit: int) -> str:
    loaded = entry.loaded
    assert loaded is not None
    timed = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in sorted((loaded.runtime_seconds or {}).items()))
    return (  # auto timed both runtimes whenever it kept OpenVINO
        f"OpenVINO was faster ({timed}) but its held buffers ({loaded.memory_bytes // MiB} MiB resident with the "
        f"model) left {', '.join(short)} no room in the memory budget for a {limit}x{limit} picture"
    )
