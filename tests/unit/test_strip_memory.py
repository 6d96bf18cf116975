"""The strip forward's worked-out memory against its measured peak, in a fresh process with the service's malloc."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from pathlib import Path
import torch
from animegan_api.runtime.memory import fix_mmap_threshold, peak_since_reset, resident_bytes, start_peak_window
from animegan_api.runtime.model import Generator
from animegan_api.runtime.strip_memory import StripCost
from animegan_api.runtime.tiling import StripForward

fix_mmap_threshold()
torch.manual_seed(0)
torch.set_num_threads(2)
upsample, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
forward = StripForward(Generator(upsample).eval())
with torch.inference_mode():
    forward(torch.rand(1, 3, 64, 64))
    picture = torch.rand(1, 3, height, width) * 2 - 1
    before = resident_bytes()
    start_peak_window()
    forward(picture)
used = peak_since_reset() - before
print(json.dumps({"idle": before, "used": used, "predicted": StripCost(forward).forward_bytes(width, height)}))
"""


@pytest.mark.parametrize("upsample", ["align_corners", "tf_legacy"])
@pytest.mark.parametrize(("width", "height"), [(640, 360), (768, 432)])
def test_the_peak_is_never_above_the_cost_and_the_cost_within_a_quarter_of_the_process_peak(
    upsample: str, width: int, height: int
) -> None:
    """640x360 takes one strip, 768x432 two: the sizes where the count was 1.27-1.49x the process's peak."""
    environment = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-c", PROBE, upsample, str(width), str(height)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True, timeout=300)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["used"] <= row["predicted"], row
    assert row["idle"] + row["predicted"] <= 1.25 * (row["idle"] + row["used"]), row
