"""Finding, describing, verifying and loading generator checkpoints (downloading them is :mod:`pull`'s job).

A weights folder holds ``*.pt`` state dicts and ``*.onnx`` graphs, each
optionally described by a sidecar ``<file>.json``. Everything that can go wrong with a file on disk is
reported as :class:`WeightsError` naming the file and the reason, so an
operator never has to read a traceback from inside torch.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from animegan_api.runtime.model import Generator
from animegan_api.runtime.onnx_graph import GraphError, read_graph

__all__ = [
    "ModelFile",
    "OnnxSignature",
    "StyleSpec",
    "WeightsError",
    "arena_run_options",
    "describe_validation",
    "discover",
    "load_generator",
    "onnx_session_options",
    "onnx_signature",
    "open_onnx",
    "read_spec",
    "served_graph",
    "sha256_of",
    "sidecar_path",
    "verify_checksum",
    "verify_loadable",
]

_FORMAT_BY_SUFFIX = {".pt": "torch", ".onnx": "onnx"}
_MODEL_SUFFIXES = tuple(_FORMAT_BY_SUFFIX)


class WeightsError(Exception):
    """A model file that cannot be used, with the path and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class StyleSpec(BaseModel):
    """How to run one model file; the fields of the sidecar ``<file>.json``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    file: str
    display_name: str | None = None
    format: Literal["torch", "onnx"] = "torch"
    architecture: Literal["animeganv2", "animeganv3"] | None = None
    layout: Literal["NCHW", "NHWC"] | None = None
    upsample: Literal["align_corners", "tf_legacy"] = "align_corners"
    size_multiple: int | None = Field(None, ge=1, le=256)
    preprocess: Literal["full", "face"] = "full"
    recommended_max_side: int | None = Field(None, ge=16)
    max_batch: int | None = Field(None, ge=1)
    license: str | None = None
    source: str | None = None
    url: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelFile:
    """A model file found on disk together with its resolved description."""

    path: Path
    spec: StyleSpec


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def read_spec(model_path: Path) -> StyleSpec:
    """The sidecar's description, or defaults inferred from the file name.

    Fields left unset (layout, architecture, size multiple of an ONNX file) are
    filled in from the model itself when it loads.
    """
    sidecar = sidecar_path(model_path)
    file_format = _FORMAT_BY_SUFFIX.get(model_path.suffix, "torch")
    if not sidecar.exists():
        return StyleSpec(name=_style_name(model_path.stem), file=model_path.name, format=file_format)
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(sidecar, f"unreadable sidecar: {exc}") from exc
    if not isinstance(raw, dict):
        raise WeightsError(sidecar, "sidecar must be a JSON object")
    raw.setdefault("name", _style_name(model_path.stem))
    raw.setdefault("format", file_format)
    raw["file"] = model_path.name
    try:
        spec = StyleSpec.model_validate(raw)
    except ValidationError as exc:
        raise WeightsError(sidecar, describe_validation(exc)) from exc
    if spec.format != file_format:
        raise WeightsError(sidecar, f"field 'format': {spec.format!r} does not match the {model_path.suffix} file")
    if spec.format == "torch" and spec.layout not in (None, "NCHW"):
        raise WeightsError(sidecar, f"field 'layout': PyTorch AnimeGANv2 files are NCHW, not {spec.layout}")
    if spec.format == "torch" and spec.architecture not in (None, "animeganv2"):
        raise WeightsError(sidecar, f"field 'architecture': PyTorch files are animeganv2, not {spec.architecture}")
    return spec


def verify_checksum(path: Path, spec: StyleSpec) -> None:
    """A sidecar that pins a SHA-256 must match the file beside it."""
    if spec.sha256 and (actual := sha256_of(path)) != spec.sha256:
        raise WeightsError(
            sidecar_path(path), f"field 'sha256': {spec.sha256} does not match {path.name} (its sha256 is {actual})"
        )


def discover(folder: Path) -> tuple[list[ModelFile], list[WeightsError]]:
    """Every model file in ``folder`` with its spec; bad sidecars are returned, not raised."""
    found: list[ModelFile] = []
    problems: list[WeightsError] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(p for p in folder.iterdir() if p.suffix in _MODEL_SUFFIXES and p.is_file()):
        try:
            found.append(ModelFile(path, read_spec(path)))
        except WeightsError as exc:
            problems.append(exc)
    return found, problems


def load_generator(path: Path, spec: StyleSpec) -> Generator:
    """Load a state dict strictly into a fresh generator in eval mode."""
    state = _read_state_dict(path)
    generator = Generator(upsample=spec.upsample)
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(path, _describe_mismatch(generator, state)) from exc
    return generator.eval()


@dataclass(frozen=True)
class OnnxSignature:
    """What an ONNX generator's graph says about how to call it."""

    input_name: str
    output_name: str
    layout: Literal["NCHW", "NHWC"]
    fixed_batch: int | None
    fixed_size: tuple[int, int] | None


def open_onnx(path: Path, threads: int, arena: bool = False, graph: bytes | None = None) -> Any:
    """An ONNX Runtime CPU session with :func:`onnx_session_options` of ``graph`` (read from ``path`` when
    not given: :func:`served_graph`); a file ORT cannot read is a WeightsError."""
    import onnxruntime as ort

    options = onnx_session_options(threads, arena)
    graph = graph if graph is not None else served_graph(path)
    try:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for bad graphs
        raise WeightsError(path, f"not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})") from exc


def served_graph(path: Path) -> bytes:
    """The ONNX file as both runtimes run it (:func:`onnx_graph.read_graph`); a file that is not a model is a
    WeightsError."""
    if not path.is_file():
        raise WeightsError(path, "file not found")
    try:
        return read_graph(path)
    except GraphError as exc:
        raise WeightsError(path, f"not a readable ONNX model ({exc})") from exc


def onnx_session_options(threads: int, arena: bool = False) -> Any:
    """Fixed thread counts, threads that do not spin between calls; ORT's memory arena only when asked.

    Without the arena every intermediate tensor is a fresh malloc, and at
    these sizes (32-64 MB) a fresh mmap whose pages fault in again on every
    run: AnimeGANv3 Hayao at 512 px takes 0.9-1.2 s on 2 threads where the
    arena makes it 0.69 s (the first shape a session sees is spared by ORT's
    memory pattern, later ones are not). The arena keeps what a picture made
    it grow, so the service runs it with :func:`arena_run_options` and only
    for pictures whose memory it measured (``predictors.OnnxPredictor``); its
    per-shape memory pattern is off because with it the peaks jumped up to 20%
    above the measured line. Graph optimisation stays at ORT's default, all
    levels. ``bench/model.py --ort-options`` times each choice.
    """
    import onnxruntime as ort

    ort.disable_telemetry_events()  # a service does not report usage to a third party
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = not arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # failures reach us as exceptions; ORT's own log would repeat them
    return options


def arena_run_options() -> Any:
    """Run options that hand the arena's free regions back after each run: one large picture does not stay."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def onnx_signature(path: Path, session: Any, spec: StyleSpec) -> OnnxSignature:
    """Read layout and fixed dimensions from the graph; a sidecar that disagrees is an error."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
        raise WeightsError(path, "expected one 4-D image input and one output")
    shape = inputs[0].shape
    layouts = {"NCHW": shape[1] == 3, "NHWC": shape[3] == 3}
    found = [name for name, matches in layouts.items() if matches]
    if len(found) != 1:
        if spec.layout is None:
            raise WeightsError(path, f"cannot tell NCHW from NHWC from input shape {shape}; set 'layout' in a sidecar")
        found = [spec.layout]
    layout = found[0]
    if spec.layout is not None and spec.layout != layout:
        raise WeightsError(
            sidecar_path(path), f"field 'layout': sidecar says {spec.layout} but the graph input {shape} is {layout}"
        )
    spatial = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return OnnxSignature(
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        layout=layout,  # type: ignore[arg-type]
        fixed_batch=shape[0] if isinstance(shape[0], int) else None,
        fixed_size=spatial if all(isinstance(d, int) for d in spatial) else None,
    )


def verify_loadable(path: Path, spec: StyleSpec) -> None:
    """Prove a file is a usable model of its declared format."""
    if spec.format == "onnx":
        onnx_signature(path, open_onnx(path, threads=1), spec)
    else:
        load_generator(path, spec)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(path, "file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's own text suggests the unsafe weights_only=False
        raise WeightsError(
            path, "not a readable PyTorch checkpoint (not a plain state dict: safe loading refused it)"
        ) from exc
    except Exception as exc:  # torch raises many unrelated types for a bad file
        raise WeightsError(
            path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(path, "expected a state dict mapping parameter names to tensors")
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise WeightsError(path, f"non-finite values in {', '.join(bad[:3])}")
    return state


def _describe_mismatch(generator: Generator, state: dict[str, torch.Tensor]) -> str:
    expected = generator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [
        f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape))
        if items
    ]
    return "not an AnimeGANv2 generator state dict (" + "; ".join(parts) + ")"


def describe_validation(exc: ValidationError) -> str:
    return "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())


def _style_name(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in stem).lstrip("_.-")
    return cleaned[:64] or "style"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
