"""Offline conversion of files and folders (``animegan-api convert``): the service's plans, runner and video pipeline.

Every input is paired with its output before any work starts, so two inputs
that would write the same file are reported, never raced; bad files are
reported and the rest carry on.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from animegan_api.cli.video import convert_video_file, is_video, video_target
from animegan_api.config import Settings
from animegan_api.failures import Refusal
from animegan_api.pictures.faces import FaceDetector
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.registry import build_registry
from animegan_api.runtime.weights import WeightsError
from animegan_api.serving.plans import Faces, Output, Plan, avatar_plan, transform_plan
from animegan_api.serving.runner import Offline, Runner

__all__ = ["Outcome", "convert", "convert_files", "expand", "run"]

_OUTPUT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass
class Outcome:
    converted: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The ``convert`` command: load the style, then every picture through its plan and every video through frames."""
    registry = build_registry(settings.weights_dir, backend=settings.backend, threads=settings.threads, lazy=True)
    entry = registry.lookup(args.style)
    if entry is None:
        names = ", ".join(registry.entries) or "none"
        return _fail(f"style {args.style or '(default)'} not found in {settings.weights_dir}; available: {names}")
    max_side = args.max_side or settings.default_max_side
    if not 16 <= max_side <= settings.max_side_limit or not 1 <= args.quality <= 100:
        return _fail(f"--max-side must be 16..{settings.max_side_limit} and --quality 1..100")
    registry.warmup_side = 64
    try:
        registry.load(entry)
    except WeightsError as exc:
        return _fail(str(exc))
    assert entry.loaded is not None
    plan = _plan(args, entry.loaded, max_side)
    if plan is None:
        return _fail("--face must be largest, all or a face index, and --margin 0..3")
    files = list(expand(args.inputs))
    videos = [path for path in files if is_video(path)]
    if videos and args.avatar:
        return _fail("--avatar takes pictures; videos are converted whole")
    pictures = [path for path in files if path not in videos]
    detector = FaceDetector(settings.face_detect_side) if plan.faces and pictures else None  # 0.6 s for dlib
    runner = Runner(detector, settings.max_pixels, settings.avatar_max_faces)
    outcome = Outcome()
    if pictures:
        outcome = convert_files(runner, plan, pictures, args.output, workers=args.workers, overwrite=args.overwrite)
    for video in videos:
        target = video_target(video, args.output, single=len(files) == 1)
        if target.exists() and not args.overwrite:
            outcome.skipped += 1
        elif failure := convert_video_file(entry.loaded, video, target, max_side, args.fps, args.deflicker):
            outcome.failures.append(failure)
        else:
            outcome.converted += 1
    print(
        f"converted {outcome.converted}, skipped {outcome.skipped} existing, failed {len(outcome.failures)}",
        file=sys.stderr,
    )
    for line in outcome.failures:
        print(f"  failed: {line}", file=sys.stderr)
    return 1 if outcome.failures else 0


def _plan(args: argparse.Namespace, style: LoadedStyle, side: int) -> Plan | None:
    """The plan the matching route would build (``--avatar``: /v1/avatar's); None for a bad --face or --margin."""
    output = Output(args.format, args.quality, args.keep_size)
    if not args.avatar:
        return transform_plan(style, side, output)
    if not (args.face in ("largest", "all") or args.face.isdigit()) or not 0 <= args.margin <= 3:
        return None
    face = args.face if args.face in ("largest", "all") else int(args.face)
    return avatar_plan(style, side, Faces(face, args.margin), output)


def _fail(message: str) -> int:
    print(f"animegan-api: {message}", file=sys.stderr)
    return 2


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
