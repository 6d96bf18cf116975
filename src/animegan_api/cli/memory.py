"""``animegan-api memory-profile``: each ONNX style's memory at the sizes it serves, written for the service.

Every size runs in a fresh process with the service's allocator (the
huge-page malloc tunable), so one forward's peak cannot hide another's;
the files go to ``--out`` (the service reads them from
``ANIMEGAN_MEMORY_PROFILE_DIR``). See docs/performance.md, "Memory".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from animegan_api.cli import hugepage_environment
from animegan_api.config import Settings

__all__ = ["ladder", "run"]

_ASPECTS = ((16, 9), (1, 1))  # the usual photo and the square, the largest picture of a side


def ladder(sides: list[int], multiple: int = 32) -> list[tuple[int, int]]:
    """``(width, height)`` of each long side in ``sides`` at 16:9 and 1:1, on the size rule's grid."""
    sizes = {
        (side // multiple * multiple, max(multiple, side * short // long // multiple * multiple))
        for side in sides
        for long, short in _ASPECTS
    }
    return sorted(sizes, key=lambda size: size[0] * size[1])


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Measure every ONNX file in the weights folder (or the ``--models`` named) and write its profile."""
    from animegan_api.runtime.memory_profile import write_profile
    from animegan_api.runtime.weights import discover

    found, _ = discover(settings.weights_dir)
    models = [m.path for m in found if m.spec.format == "onnx" and (not args.models or m.path.name in args.models)]
    if not models:
        print(f"no ONNX models to measure in {settings.weights_dir.resolve()}", file=sys.stderr)
        return 1
    for model in models:
        points = []
        for width, height in ladder(args.sides):
            started = time.perf_counter()
            readings = [_measure_in_fresh_process(model, width, height, settings.threads) for _ in range(args.repeats)]
            nbytes = max(readings)  # one size's peak varies by up to 17% between processes: keep the worst
            points.append((width, height, nbytes))
            print(
                f"{model.name:28} {width:>5}x{height:<5} {nbytes / 2**20:8.0f} MiB "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
        print(f"wrote {write_profile(args.out, model, settings.threads, points)}", flush=True)
    return 0


def _measure_in_fresh_process(model: Path, width: int, height: int, threads: int) -> int:
    environment = {**hugepage_environment(), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "animegan_api.cli.memory", str(model), str(width), str(height), str(threads)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {model.name} at {width}x{height} failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def _probe(argv: list[str]) -> int:
    """The fresh process: one forward, its bytes on stdout."""
    from animegan_api.runtime.memory_profile import measure_forward

    model, width, height, threads = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    print(measure_forward(model, width, height, threads))
    return 0


if __name__ == "__main__":
    sys.exit(_probe(sys.argv[1:]))
