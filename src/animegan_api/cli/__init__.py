"""The ``animegan-api`` command: serve, list styles, convert files, pull weights.

Heavy imports (torch, the app) happen inside the commands, so ``--help`` is
instant and ``serve`` can pin OpenMP's thread count before torch loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from animegan_api.config import Settings

__all__ = ["hugepage_environment", "main", "reexec_with_hugepage_malloc"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.from_command_line = argv is None
    try:
        return int(args.command(args) or 0)
    except ValidationError as exc:
        print(f"animegan-api: invalid setting: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animegan-api", description="Photos to anime-style pictures with AnimeGAN.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service (every option also reads ANIMEGAN_<OPTION>)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--weights-dir", type=Path)
    serve.add_argument("--workers", type=int, help="requests running inference at once (W)")
    serve.add_argument("--threads", type=int, help="torch threads per forward (T)")
    serve.add_argument("--max-queue", type=int, help="requests allowed to wait beyond W")
    serve.add_argument("--request-timeout-s", type=float, help="deadline for queue wait plus inference")
    serve.add_argument("--drain-timeout-s", type=float, help="on SIGTERM, how long admitted requests may finish")
    serve.add_argument("--default-style")
    serve.add_argument(
        "--backend", choices=["torch", "onnxruntime"], help="which file runs a style found in both formats"
    )
    serve.add_argument("--load-mode", choices=["eager", "lazy"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.set_defaults(command=_serve)

    styles = sub.add_parser("styles", help="list the models found in the weights folder")
    styles.add_argument("--weights-dir", type=Path)
    styles.add_argument("--json", action="store_true", help="print JSON instead of a table")
    styles.set_defaults(command=_styles)

    convert = sub.add_parser("convert", help="convert files and folders offline: the plans and runner the service uses")
    convert.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="pictures, videos and folders")
    convert.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="a folder (or, for one video, a .mp4 file)"
    )
    convert.add_argument("--style")
    convert.add_argument("--max-side", type=int)
    convert.add_argument("--keep-size", action="store_true")
    convert.add_argument("--format", choices=["jpeg", "png", "webp"], default="png")
    convert.add_argument("--quality", type=int, default=90)
    convert.add_argument("--overwrite", action="store_true", help="replace existing output files")
    convert.add_argument("--weights-dir", type=Path)
    convert.add_argument("--backend", choices=["torch", "onnxruntime"])
    convert.add_argument("--threads", type=int, help="torch/ORT threads per forward")
    convert.add_argument("--workers", type=int, default=1, help="pictures converted at once")
    convert.add_argument(
        "--avatar", action="store_true", help="find the face and write a square avatar (--max-side is its side)"
    )
    convert.add_argument("--face", default="largest", help="with --avatar: largest, all (a sheet), or an index")
    convert.add_argument("--margin", type=float, default=0.6, help="with --avatar: room around the face (0-3)")
    convert.add_argument("--fps", type=float, help="videos: frames per second of the result (at most the source's)")
    convert.add_argument(
        "--deflicker", action="store_true", help="videos: steady each frame's mean colour (see docs/jobs.md)"
    )
    convert.set_defaults(command=_convert)

    memory = sub.add_parser(
        "memory-profile", help="measure each ONNX style's memory at the sizes it serves (ANIMEGAN_MEMORY_PROFILE_DIR)"
    )
    memory.add_argument("--out", type=Path, required=True, help="folder for the profiles")
    memory.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 1536, 2048], help="long sides measured")
    memory.add_argument("--models", nargs="+", help="file names in the weights folder (default: every ONNX file)")
    memory.add_argument("--repeats", type=int, default=2, help="fresh processes per size; the largest reading counts")
    memory.add_argument("--weights-dir", type=Path)
    memory.add_argument("--threads", type=int, help="threads per forward: the service's ANIMEGAN_THREADS")
    memory.set_defaults(command=_memory_profile)

    health = sub.add_parser(
        "healthcheck", help="exit 0 when the running server answers /healthz (container HEALTHCHECK)"
    )
    health.add_argument("--port", type=int, help="default: the running serve's --port, else ANIMEGAN_PORT")
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(command=_healthcheck)

    weights = sub.add_parser("weights", help="manage model files")
    weights_sub = weights.add_subparsers(required=True, metavar="ACTION")
    pull = weights_sub.add_parser("pull", help="download official checkpoints listed in the manifest")
    pull.add_argument("names", nargs="*", metavar="NAME", help="styles to pull (default: all in the manifest)")
    pull.add_argument("--manifest", type=Path, help="default: the manifest installed with the package")
    pull.add_argument("--weights-dir", type=Path)
    pull.add_argument("--timeout", type=float, default=60.0)
    pull.set_defaults(command=_pull)
    return parser


def _settings(args: argparse.Namespace, *names: str) -> Settings:
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        "host",
        "port",
        "weights_dir",
        "workers",
        "threads",
        "max_queue",
        "request_timeout_s",
        "drain_timeout_s",
        "default_style",
        "backend",
        "load_mode",
        "log_level",
        "log_format",
    )
    if settings.malloc_hugepages and args.from_command_line:
        reexec_with_hugepage_malloc(["-m", "animegan_api", *sys.argv[1:]])
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(settings.threads))
    from animegan_api.cli.logs import configure
    from animegan_api.http.app import create_app

    configure(settings.log_level, settings.log_format)
    from animegan_api.http.server import serve

    # After a second signal uvicorn restores this handler and re-raises the signal:
    # exiting 0 still tells a supervisor the shutdown was the one it asked for.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(create_app(settings), settings)
    return 0


_HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"


def reexec_with_hugepage_malloc(arguments: list[str]) -> None:
    """Restart this process as ``python *arguments`` with glibc's malloc asking for transparent huge pages.

    A 512x512 forward allocates and frees about 1.5 GB of activations. glibc
    hands blocks that large back to the kernel on free, so every forward
    faulted its memory in again 4 KiB at a time: about 400,000 page faults,
    some 20% of the forward's time on a 2-core EPYC. With huge pages the same
    work takes about 15,000 faults. glibc reads the tunable only at process start,
    hence the exec; it does nothing where the tunable is set already or the
    C library is not glibc. ``bench/compare.py`` uses it too, so its raw
    forwards run with the service's allocator.
    """
    if "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return
    environment = hugepage_environment()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *arguments], environment)


def hugepage_environment() -> dict[str, str]:
    """This process's environment with glibc's huge-page malloc tunable added (kept if already there)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        tunables = ":".join(filter(None, [tunables, _HUGEPAGE_TUNABLE]))
    return {**os.environ, "GLIBC_TUNABLES": tunables}


def _styles(args: argparse.Namespace) -> int:
    from animegan_api.runtime.weights import discover

    folder = _settings(args, "weights_dir").weights_dir
    found, problems = discover(folder)
    if args.json:
        rows: list[dict[str, Any]] = [
            {**m.spec.model_dump(exclude_none=True), "path": str(m.path), "bytes": m.path.stat().st_size} for m in found
        ]
        rows += [{"file": p.path.name, "error": p.reason} for p in problems]
        print(json.dumps(rows, indent=2))
    else:
        if not found and not problems:
            print(f"no models in {folder.resolve()}; run 'animegan-api weights pull'", file=sys.stderr)
        for m in found:
            spec = m.spec
            details = f"upsample={spec.upsample}" if spec.format == "torch" else f"layout={spec.layout or 'from graph'}"
            print(
                f"{spec.name:24} {m.path.name:28} {spec.format:6} {details} "
                f"multiple={spec.size_multiple or 'probed'} preprocess={spec.preprocess}"
            )
        for p in problems:
            print(f"{'(unusable)':24} {p.path.name:28} {p.reason}")
    return 1 if problems else 0


def _convert(args: argparse.Namespace) -> int:
    from animegan_api.cli.convert import run

    return run(args, _settings(args, "weights_dir", "backend", "threads"))


def _memory_profile(args: argparse.Namespace) -> int:
    from animegan_api.cli.memory import run

    return run(args, _settings(args, "weights_dir", "threads"))


def _healthcheck(args: argparse.Namespace) -> int:
    from animegan_api.cli.health import healthy, listening_address

    settings = Settings()
    host, port = listening_address((settings.host, settings.port))
    return 0 if healthy(host, args.port or port, args.timeout) else 1


def _fail(message: str) -> int:
    print(f"animegan-api: {message}", file=sys.stderr)
    return 2


def _pull(args: argparse.Namespace) -> int:
    from animegan_api.runtime.pull import PullError, packaged_manifest, pull, read_manifest
    from animegan_api.runtime.weights import WeightsError

    dest = _settings(args, "weights_dir").weights_dir
    manifest_path = args.manifest or packaged_manifest()
    try:
        specs = read_manifest(manifest_path)
    except WeightsError as exc:
        return _fail(str(exc))
    if unknown := set(args.names) - {s.name for s in specs}:
        known = ", ".join(s.name for s in specs)
        return _fail(f"not in {manifest_path}: {', '.join(sorted(unknown))}; known: {known}")
    selected = [s for s in specs if not args.names or s.name in args.names]

    def done(spec: Any, path: Path, digest: str) -> None:
        print(f"pulled {spec.name} -> {path} (sha256 {digest})")

    try:
        pull(selected, dest, timeout_s=args.timeout, on_done=done)
    except PullError as exc:
        print(
            f"animegan-api: {exc}\n(weights pull needs internet access to the URLs in {manifest_path}; "
            f"or copy model files into {dest} yourself)",
            file=sys.stderr,
        )
        return 1
    return 0


def _settings_problem(exc: ValidationError) -> str:
    return "; ".join(
        f"ANIMEGAN_{str(err['loc'][0]).upper()}: {err['msg']}" if err["loc"] else err["msg"] for err in exc.errors()
    )
