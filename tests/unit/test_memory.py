"""The process's memory: the default budget, the container limit, measuring a style's need, handing memory back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from animegan_api.runtime import memory
from animegan_api.runtime.memory import (
    LinearCost,
    MiB,
    SplitCost,
    calibrate,
    calibrated_pixels,
    default_budget,
    held_cost,
)
from animegan_api.runtime.model import Generator
from animegan_api.runtime.predictors import TorchPredictor


def test_the_default_budget_leaves_headroom_under_a_container_limit() -> None:
    assert default_budget(3 * 1024 * MiB) == 3 * 1024 * MiB - int(3 * 1024 * MiB * 0.10)
    assert default_budget(1024 * MiB) == 768 * MiB  # 256 MiB of headroom is the least
    assert default_budget(None, physical=16 * 1024 * MiB) == 12 * 1024 * MiB


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("max\n", None, None),
        ("3221225472\n", None, 3221225472),
        (None, "9223372036854771712", None),
        (None, "2147483648", 2147483648),
        (None, None, None),
    ],
)
def test_the_container_limit_is_read_from_cgroup_v2_then_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v2: str | None, v1: str | None, expected: int | None
) -> None:
    files = (tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes")
    for path, text in zip(files, (v2, v1), strict=True):
        if text is not None:
            path.write_text(text)
    monkeypatch.setattr(memory, "_CGROUP_FILES", files)
    assert memory.container_limit() == expected


def test_a_forward_is_measured_at_two_sizes() -> None:
    torch.manual_seed(0)
    cost = calibrate(TorchPredictor(Generator().eval()), multiple=4)
    assert cost is not None
    assert cost.per_pixel > 100  # at least the float32 activations of a few channels
    assert cost.forward_bytes(512, 512) > cost.forward_bytes(256, 256) > 0


def test_a_split_cost_uses_each_line_on_its_side_and_never_falls_past_the_split() -> None:
    cost = SplitCost(small=LinearCost(0, 10.0), large=LinearCost(0, 4.0), pixels=100)
    assert cost.forward_bytes(10, 10) == 1000  # the small line up to the split
    assert cost.forward_bytes(11, 10) == 1000  # the large line (440) would fall below it
    assert cost.forward_bytes(30, 30) == 3600
    assert calibrated_pixels(256) == 512 * 512 and calibrated_pixels(16) == 128 * 128


def test_freed_memory_can_be_handed_back() -> None:
    memory.give_back()  # glibc's malloc_trim where present; a no-op elsewhere
    assert memory.resident_bytes() > 0


def test_a_measured_cost_is_a_line_in_pixels() -> None:
    assert LinearCost(fixed=100, per_pixel=2.0).forward_bytes(10, 5) == 200


def test_a_runtime_that_keeps_its_buffers_costs_what_one_more_forward_adds_plus_slack() -> None:
    assert held_cost(LinearCost(fixed=MiB, per_pixel=0.5)) == LinearCost(fixed=33 * MiB, per_pixel=0.5)
    assert held_cost(None) is None
