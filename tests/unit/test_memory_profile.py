"""Memory profiles: ONNX styles' memory measured at the sizes they serve, written once, read at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from animegan_api.cli import main
from animegan_api.cli.memory import ladder
from animegan_api.runtime.memory import SplitCost
from animegan_api.runtime.memory_profile import MeasuredCost, read_profile, write_profile
from conftest import load_file

MiB = 1024 * 1024


def test_measured_cost_joins_its_points_and_scales_past_the_largest() -> None:
    cost = MeasuredCost(((100, 1000), (300, 2000), (400, 2400)), margin=0.0)
    assert cost.forward_bytes(10, 5) == 1000  # below the smallest: the smallest's bytes
    assert cost.forward_bytes(10, 20) == 1500  # halfway between 100 and 300 pixels
    assert cost.forward_bytes(20, 20) == 2400
    assert cost.forward_bytes(40, 20) == 4800  # beyond: the largest's bytes per pixel
    assert MeasuredCost(((100, 1000),), margin=0.15).forward_bytes(10, 10) == 1150


def test_measured_cost_never_falls_as_pictures_grow() -> None:
    cost = MeasuredCost(((400, 900), (100, 1000), (200, 700)), margin=0.0)  # unsorted, with a dip
    sizes = [cost.forward_bytes(side, side) for side in range(5, 30)]
    assert sizes == sorted(sizes)
    assert cost.forward_bytes(10, 20) == 1000 and cost.forward_bytes(20, 20) == 1000


def test_ladder_measures_each_side_as_a_photo_and_as_a_square() -> None:
    assert ladder([512, 2048]) == [(512, 288), (512, 512), (2048, 1152), (2048, 2048)]
    assert ladder([100], multiple=32) == [(96, 32), (96, 96)]


def test_a_profile_counts_only_for_its_file_threads_runtime_and_graph(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(onnx_models["nhwc"], model)
    path = write_profile(tmp_path / "profiles", model, 2, [(64, 64, 40 * MiB), (32, 32, 10 * MiB)])
    assert path.name == "m.onnx.memory.json"
    cost = read_profile(tmp_path / "profiles", model, 2)
    assert cost == MeasuredCost(((32 * 32, 10 * MiB), (64 * 64, 40 * MiB)))
    assert read_profile(tmp_path / "profiles", model, 1) is None  # measured on 2 threads
    assert read_profile(tmp_path / "elsewhere", model, 2) is None
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "onnxruntime": "0.0.1"}))
    assert read_profile(tmp_path / "profiles", model, 2) is None  # another ONNX Runtime
    path.write_text(json.dumps({key: value for key, value in document.items() if key != "graph"}))
    assert read_profile(tmp_path / "profiles", model, 2) is None  # measured before the graph rewrite
    path.write_text(json.dumps(document))
    model.write_bytes(onnx_models["nchw"].read_bytes())
    assert read_profile(tmp_path / "profiles", model, 2) is None  # another file under the same name
    path.write_text("{not json")
    assert read_profile(tmp_path / "profiles", model, 2) is None


def test_the_command_measures_each_size_and_the_service_sizes_large_pictures_by_it(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    model = weights / "tiny.onnx"
    shutil.copy(onnx_models["nhwc"], model)
    out = tmp_path / "p"
    arguments = ["--weights-dir", str(weights), "--out", str(out), "--sides", "64", "--threads", "1"]
    status = main(["memory-profile", *arguments])  # two fresh processes a size, the larger reading kept
    assert status == 0
    document = json.loads((tmp_path / "p" / "tiny.onnx.memory.json").read_text())
    assert [(p["width"], p["height"]) for p in document["points"]] == [(64, 32), (64, 64)]
    assert all(p["bytes"] > 0 for p in document["points"]) and document["threads"] == 1
    style = load_file(model, onnx_runtime="onnxruntime", measure_memory=True, memory_profiles=tmp_path / "p")
    assert isinstance(style.cost, SplitCost) and isinstance(style.cost.large, MeasuredCost)
    per_pixel = document["points"][-1]["bytes"] / (64 * 64)  # above the arena's sizes: the profile, scaled
    assert style.cost.forward_bytes(256, 256) == int(per_pixel * 256 * 256 * 1.15)
    without = load_file(model, onnx_runtime="onnxruntime", measure_memory=True)
    assert isinstance(without.cost, SplitCost) and not isinstance(without.cost.large, MeasuredCost)


def test_the_command_says_when_there_is_nothing_to_measure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory-profile", "--weights-dir", str(tmp_path), "--out", str(tmp_path / "p")]) == 1
    assert "no ONNX models" in capsys.readouterr().err
