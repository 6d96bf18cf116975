"""Loads at the inference priority: the runtimes' own worker threads take the niced caller's priority."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from animegan_api.runtime.priority import at_priority
from animegan_api.runtime.registry import build_registry
from conftest import save_onnx_generator


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _threads() -> dict[int, int]:
    """Every thread of this process and its nice value (field 19 of its stat line)."""
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        threads[int(task.name)] = int(fields[16])
    return threads


def test_a_call_and_the_threads_it_makes_run_at_the_lowered_priority() -> None:
    base = _nice()

    def make_a_thread() -> tuple[int, int]:
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(_nice()))
        worker.start()
        worker.join()
        return _nice(), seen[0]

    assert at_priority(4, make_a_thread) == (min(19, base + 4),) * 2
    assert at_priority(0, _nice) == base  # 0: here, as it is
    assert _nice() == base


def test_a_runtime_s_worker_threads_are_made_at_the_inference_priority(tmp_path: Path) -> None:
    save_onnx_generator(tmp_path / "random.onnx")
    before, base = _threads(), _nice()
    registry = build_registry(tmp_path, backend="onnxruntime", threads=2, warmup_side=32, nice=3)
    made = {tid: nice for tid, nice in _threads().items() if tid not in before}
    assert registry.entries["random"].loaded is not None
    assert made, "ONNX Runtime's intra-op pool of two threads makes one worker thread"
    assert set(made.values()) == {min(19, base + 3)}
