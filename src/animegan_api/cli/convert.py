"""Offline conversion of files and folders (``animegan-api convert``): the service's plans and runner.

Every input is paired with its output before any work starts, so two inputs
that would write the same file are reported, never raced; bad files are
reported and the rest carry on.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from animegan_api.failures import Refusal
from animegan_api.serving.plans import Plan
from animegan_api.serving.runner import Offline, Runner

__all__ = ["Outcome", "convert", "convert_files", "expand"]

_OUTPUT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass
class Outcome:
    converted: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def convert_files(
    runner: Runner,
    plan: Plan,
    inputs: Sequence[Path],
    output: Path,
    *,
    workers: int = 1,
    overwrite: bool = False,
) -> Outcome:
    """Run ``plan`` on every picture under ``inputs`` into ``output``, ``workers`` at a time, with a progress bar."""
    jobs, collisions = _plan_outputs(list(expand(inputs)), output, _OUTPUT_SUFFIXES[plan.output.format])
    output.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(failures=collisions)

    def one(source: Path, target: Path) -> str | None:
        if target.exists() and not overwrite:
            return "skipped"
        try:
            target.write_bytes(convert(runner, plan, source.read_bytes()))
        except Refusal as exc:  # not a picture, too large, no face
            return f"{source}: {exc.message}"
        except OSError as exc:
            return f"{source}: {exc}"
        return None

    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(jobs), unit="img", desc=",".join(s.spec.name for s in plan.styles), file=sys.stderr) as bar,
    ):
        for future in as_completed([pool.submit(one, *job) for job in jobs]):
            result = future.result()
            if result == "skipped":
                outcome.skipped += 1
            elif result:
                outcome.failures.append(result)
            else:
                outcome.converted += 1
            bar.update()
    return outcome


def convert(runner: Runner, plan: Plan, data: bytes) -> bytes:
    """One file through the service's runner, in the calling thread, without admission."""
    return asyncio.run(runner.run(plan, data, Offline())).body


def _plan_outputs(files: list[Path], outdir: Path, suffix: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair each input with its output; inputs that would write the same output are failures, not races."""
    jobs: list[tuple[Path, Path]] = []
    claimed: dict[Path, Path] = {}
    failures: list[str] = []
    for source in files:
        target = outdir / (source.stem + suffix)
        if target in claimed:
            failures.append(f"collision: {source} would overwrite the output of {claimed[target]} ({target.name})")
            continue
        claimed[target] = source
        jobs.append((source, target))
    return jobs, failures


def expand(inputs: Sequence[Path]) -> Iterator[Path]:
    for item in inputs:
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield item
