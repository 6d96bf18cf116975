"""The benchmark scripts' own logic: the Flask baseline really serves, and the report judges each target."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import picture_bytes, save_random_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import baseline_flask
import compare
import flops


@pytest.mark.parametrize("kind", ["pt", "nhwc"])
def test_flask_baseline_converts_to_512_png_and_refuses_a_missing_field(
    tmp_path: Path, onnx_models: dict[str, Path], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = save_random_generator(tmp_path / "r.pt") if kind == "pt" else onnx_models[kind]
    monkeypatch.setattr(baseline_flask, "WEIGHTS", weights)
    monkeypatch.setattr(baseline_flask, "_model", None)
    client = baseline_flask.app.test_client()
    response = client.post("/transform", data={"image": (io.BytesIO(picture_bytes((80, 60), fmt="JPEG")), "p.jpg")})
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (512, 512)
    assert client.post("/transform", data={}).status_code == 400
    too_big = client.post("/transform", data={"image": (io.BytesIO(b"x" * (11 * 1024 * 1024)), "big.jpg")})
    assert too_big.status_code == 413


def test_onnx_flops_count_what_the_torch_counter_counts(onnx_models: dict[str, Path]) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from animegan_api.runtime.model import Generator

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        Generator()(torch.zeros(1, 3, 64, 64))
    assert flops.onnx_flops(onnx_models["nchw"], 64) == counter.get_total_flops()
    assert flops.onnx_flops(onnx_models["nhwc"], 64) == counter.get_total_flops()


def _summary(throughput: float, p50: float, p99: float, statuses: dict[str, int] | None = None) -> dict:
    latency = {"p50": p50, "p90": p99, "p99": p99, "max": p99}
    return {
        "throughput_rps": throughput,
        "latency_ok_s": latency,
        "statuses": statuses or {"200": 10},
        "latency_by_status_s": {"200": latency},
        "concurrency": 36,
        "wall_s": 60.0,
    }


def _run(ours_tp: float, flask_tp: float, refusal_p99: float, server_p50: float = 2.0) -> dict:
    raw = {"median_s": 2.0, "min_s": 1.9, "max_s": 2.1, "images_per_s": 0.5, "runs": 6}
    overload = _summary(0.4, 10.0, 20.0, {"200": 24, "503": 300})
    overload["latency_by_status_s"]["503"] = {"p50": 0.005, "p90": 0.01, "p99": refusal_p99, "max": refusal_p99}
    overload["refusals_server_ms"] = {"p50": server_p50, "p99": 4 * server_p50}
    return {
        "meta": {
            "date": "2026-11-28 12:00 UTC",
            "cpu": "Test CPU",
            "cores": 2,
            "torch": "2.13.0",
            "python": "3.11",
            "workers": 1,
            "threads": 2,
            "wall_s": 600.0,
        },
        "raw": {"1": raw, "8": raw, "all": raw},
        "ours": {"1": _summary(0.49, 2.01, 2.1), "8": _summary(ours_tp, 16.0, 18.0)},
        "baseline": {"1": _summary(0.3, 3.3, 3.5), "8": _summary(flask_tp, 22.0, 27.0, {"200": 8, "504": 2})},
        "overload": overload,
        "memory": {
            "upload_bytes": 1_500_000,
            "idle_rss_mib": 330.0,
            "peak_rss_mib": 980.0,
            "statuses": {"200": 9, "503": 7},
        },
    }


@pytest.mark.parametrize(
    ("ours_tp", "flask_tp", "refusal_p99", "server_p50", "missed"),
    [(0.49, 0.3, 0.02, 2.0, 0), (0.4, 0.35, 0.2, 20.0, 3), (0.4, 0.35, 0.2, 35.0, 4)],
)
def test_report_tables_the_levels_and_judges_every_target(
    ours_tp: float, flask_tp: float, refusal_p99: float, server_p50: float, missed: int
) -> None:
    report = compare.render(_run(ours_tp, flask_tp, refusal_p99, server_p50))
    assert report.startswith("## 2026-11-28 12:00 UTC: Test CPU, 2 cores")
    assert "| 8 | 0.500 |" in report and "2 x 504" in report
    verdicts = [line for line in report.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 6  # throughput, p50, c=8 vs Flask, overload, refusals by the server's clock, memory
    assert sum(line.startswith("- MISSED") for line in verdicts) == missed


def test_report_gives_each_style_its_share_of_the_fp32_limit_and_ratio_to_flask() -> None:
    run = _run(0.49, 0.3, 0.02)
    v3 = {"file": "v3.onnx", "runtime": "openvino", "gflop_per_image": 59.2, "raw_forward_s": 0.5}
    v3 |= {"ours": _summary(1.8, 2.0, 2.4), "baseline": _summary(0.9, 4.0, 5.0, {"200": 12, "504": 1})}
    run["styles"] = {"peak_gflop_s": 118.4, "concurrency": 4, "styles": {"v3 Hayao": v3}}
    report = compare.render(run)
    assert "118.4 GFLOP/s" in report
    assert (
        "| v3 Hayao | openvino | 59.2 | 2.00 | 2.000 | 1.800 | 2.40 | 0.900 | 90% | 0.90 | 2.00 | - | 1 x 504 |"
        in report
    )
