"""A one-minute soak in the suite: memory stays flat under steady mixed load (bench/soak.py runs longer)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from soak import soak

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]


def test_one_minute_soak_keeps_memory_flat(shared: Path, tmp_path: Path) -> None:
    photos = [
        "street_03_4k.jpg",
        "landscape_04.jpg",
        "street_02.jpg",
        "food_01.jpg",
        "face_01.jpg",
        "night_01.jpg",
        "group_01.jpg",
        "sky_01.jpg",
    ]  # every size class, the 4K one too
    summary = soak(
        shared / "models",
        duration_s=60,
        sample_s=2,
        max_growth_mib=100,
        photos_dir=shared / "photos",
        photo_names=photos,
        log=tmp_path / "server.log",
    )
    print(
        f"\nsoak: {summary['warmup_requests']} warm-up + {summary['requests']} requests {summary['statuses']}, "
        f"RSS after warm-up {summary['rss_after_warmup_mib']} MiB (warm peak {summary['rss_warm_peak_mib']}), "
        f"soak peak {summary['rss_soak_peak_mib']} MiB, floor by thirds {summary['rss_first_third_floor_mib']} -> "
        f"{summary['rss_last_third_floor_mib']} MiB, end {summary['rss_end_mib']} MiB"
    )
    assert summary["requests"] >= 5
    assert summary["passed"], summary
