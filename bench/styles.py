"""Each benchmarked style under load: the raw forward, the service and the Flask design, against the fp32 limit.

Part of ``bench/compare.py``. For every style, at a concurrency that keeps the
service's workers busy (512x512 photos, PNG out): images/s of the raw
forward (the service's own predictor, in process), of the service at its
defaults (only that style loaded, cache off) and of the Flask design running
the same file; the share of the fp32 limit the service reaches (its GFLOP/s
against the fp32 matmul peak measured in the same run) and its ratio to Flask.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.pictures import imaging
from animegan_api.runtime.predictors import load_style
from animegan_api.runtime.weights import ModelFile, load_generator, read_spec
from flops import onnx_flops
from load import run_load
from local_server import start_baseline, start_server, stop, wait_idle
from model import flops_per_image, matmul_peak

DEFAULTS = Settings()
STYLES = {  # ONNX files run on the runtime ANIMEGAN_ONNX_RUNTIME chooses (the table names it)
    "AnimeGANv2 Hayao (PyTorch)": "animeganv2_hayao.pt",
    "AnimeGANv2 Hayao (ONNX)": "animeganv2_hayao.onnx",
    "AnimeGANv3 Hayao": "animeganv3_hayao.onnx",
    "AnimeGANv3 Shinkai": "animeganv3_shinkai.onnx",
    "AnimeGANv3 Cute": "animeganv3_cute.onnx",
}
SIDE = 512
UNCACHED = {"ANIMEGAN_RATE_LIMIT_ENABLED": "false", "ANIMEGAN_CACHE_MAX_BYTES": "0"}  # every request runs the model


class RawModel:
    """The predictor the service builds, called in-process on a ready tensor: the ceiling."""

    def __init__(self, model: Path, photo: Path) -> None:
        torch.set_num_threads(DEFAULTS.threads)
        style = load_style(
            ModelFile(model, read_spec(model)),
            DEFAULTS.threads,
            DEFAULTS.warmup_side,
            onnx_runtime=DEFAULTS.onnx_runtime,
            streams=DEFAULTS.workers,
        )
        self.predictor, self.runtime = style.predictor, style.runtime
        self.batch = imaging.to_batch(Image.open(photo).convert("RGB").resize((SIDE, SIDE)))
        self.predictor(self.batch)

    def block(self, runs: int = 3) -> list[float]:
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            self.predictor(self.batch)
            times.append(time.perf_counter() - began)
        print(f"     raw {' '.join(f'{t:.3f}' for t in times)} s", flush=True)
        return times


def measure_styles(models: Path, photo: Path, uploads: list[bytes], folder: Path) -> dict:
    """Every style of ``STYLES`` found in ``models``, one after another, each from a folder holding only it."""
    concurrency = 4 * DEFAULTS.workers
    result: dict = {"peak_gflop_s": round(matmul_peak(DEFAULTS.threads), 1), "concurrency": concurrency, "styles": {}}
    for label, name in STYLES.items():
        if not (models / name).is_file():
            continue
        weights = folder / name.replace(".", "_")
        weights.mkdir()
        for part in (name, name + ".json"):
            (weights / part).symlink_to((models / part).resolve())
        result["styles"][label] = _style(models / name, weights, photo, uploads, concurrency)
    return result


def _style(model: Path, weights: Path, photo: Path, uploads: list[bytes], concurrency: int) -> dict:
    """Raw forwards before and after the two designs' runs, so drift over the minutes shows in both."""
    raw = RawModel(model, photo)
    before = raw.block(3)
    requests = max(12, round(40 / statistics.median(before)) // concurrency * concurrency)  # ~40 s of work
    ours, url = start_server(weights, ["--max-queue", "16", "--log-level", "warning"], env=UNCACHED)
    try:
        served = asyncio.run(run_load(url, uploads, concurrency, requests, 300.0))
    finally:
        stop(ours)
    flask, flask_url = start_baseline(model)
    try:
        baseline = asyncio.run(run_load(flask_url, uploads, concurrency, requests, 300.0, path="/transform"))
        wait_idle(flask.pid)
    finally:
        stop(flask)
    forward_s = statistics.median(before + raw.block(3))
    print(f"{model.name}: ours {served['statuses']}, Flask {baseline['statuses']}", flush=True)
    return {
        "file": model.name,
        "runtime": raw.runtime,
        "gflop_per_image": round(_flops(model) / 1e9, 2),
        "raw_forward_s": round(forward_s, 4),
        "ours": served,
        "baseline": baseline,
    }


def _flops(model: Path) -> int:
    if model.suffix == ".onnx":
        return onnx_flops(model, SIDE)
    return flops_per_image(load_generator(model, read_spec(model)), SIDE)


def render_styles(styles: dict) -> list[str]:
    """The per-style table for RESULTS.md."""
    peak = styles["peak_gflop_s"]
    lines = [
        f"Per style at concurrency {styles['concurrency']}, {SIDE}x{SIDE}; fp32 limit = the matmul peak measured in "
        f"this run ({peak:.1f} GFLOP/s on {DEFAULTS.threads} threads) / the style's GFLOP per picture:",
        "",
        "| style | runtime | GFLOP | fp32 limit img/s | raw img/s | ours img/s | ours p99 s | Flask img/s "
        "| ours % of fp32 limit | ours/raw | ours/Flask | non-200 ours | non-200 Flask |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, style in styles["styles"].items():
        limit = peak / style["gflop_per_image"]
        raw, ours, flask = 1 / style["raw_forward_s"], style["ours"], style["baseline"]
        tp, flask_tp = ours["throughput_rps"], flask["throughput_rps"]
        lines.append(
            f"| {label} | {style.get('runtime', '-')} | {style['gflop_per_image']:.1f} | {limit:.2f} | {raw:.3f} "
            f"| {tp:.3f} "
            f"| {ours['latency_ok_s']['p99']:.2f} | {flask_tp:.3f} | {100 * tp / limit:.0f}% | {tp / raw:.2f} "
            f"| {tp / flask_tp if flask_tp else float('inf'):.2f} | {errors(ours)} | {errors(flask)} |"
        )
    return lines


def errors(summary: dict) -> str:
    errors = {k: v for k, v in summary["statuses"].items() if k != "200"}
    return ", ".join(f"{v} x {k}" for k, v in errors.items()) or "-"
