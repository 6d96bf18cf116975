"""Reading videos: the allowed demuxers only, exact rates and timestamps, upright frames, truncation caught."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from animegan_api.pictures.video import FrameStep, VideoError, container_format, even_size, probe, read_frames
from videos import make_clip


def test_the_demuxer_comes_from_the_magic_bytes_and_text_playlists_have_none(shared_videos: Path) -> None:
    assert container_format((shared_videos / "carphone_pristine.mp4").read_bytes()[:16]) == "mov"
    assert container_format(b"\x1a\x45\xdf\xa3" + bytes(12)) == "matroska"
    assert container_format(b"#EXTM3U\n#EXT-X-VERSION:3\n") is None
    assert container_format(b"ffconcat version 1.0\nfile '/etc/passwd'\n") is None


def test_a_29_97_clip_keeps_its_exact_rate_and_count(shared_videos: Path) -> None:
    info = probe(shared_videos / "carphone_pristine.mp4", "mov")
    assert (info.rate, info.frames, info.width, info.height) == (Fraction(30000, 1001), 120, 176, 144)
    assert info.audio == ()


def test_the_5_1_clip_reports_its_sound(shared_videos: Path) -> None:
    info = probe(shared_videos / "bigbuckbunny.mp4", "mov")
    assert (info.rate, info.frames, info.audio) == (Fraction(25), 132, ("aac",))


def test_frames_keep_their_timestamps_on_a_variable_rate(tmp_path: Path) -> None:
    times = [0, 0.04, 0.1, 0.13, 0.3, 0.31, 0.5, 0.7, 0.72, 0.9]
    clip = make_clip(tmp_path / "vfr.mp4", times=times)
    info = probe(clip, "mov")
    frames = list(read_frames(clip, info, (64, 48)))
    assert [round(frame.time_s, 4) for frame in frames] == times


def test_a_rotated_clip_is_read_upright(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "phone.mp4", size=(64, 48), rotation=90)
    info = probe(clip, "mov")
    assert (info.width, info.height, info.rotation, info.stored_size) == (48, 64, 90, (64, 48))
    first = next(read_frames(clip, info, (48, 64)))
    assert first.rgb.shape == (64, 48, 3)
    red = (first.rgb[..., 0] > 200) & (first.rgb[..., 1] < 60) & (first.rgb[..., 2] < 50)
    rows, columns = np.nonzero(red)
    # Turned a quarter counterclockwise for display, as players do: the stored top-left is now bottom-left.
    assert rows.mean() > 48 and columns.mean() < 10


def test_fps_drops_frames_evenly() -> None:
    times = [i / 30 for i in range(30)]
    step = FrameStep(15)
    assert sum(step.keep(t) for t in times) == 15
    step = FrameStep(10)
    assert [t for t in [i * 1001 / 30000 for i in range(120)] if step.keep(t)][:3] == pytest.approx(
        [0, 3 * 1001 / 30000, 6 * 1001 / 30000]
    )
    assert all(FrameStep(None).keep(t) for t in times)


def test_fps_restarts_after_a_gap_in_a_variable_rate_stream() -> None:
    step = FrameStep(10)
    kept = [t for t in [0.0, 0.05, 0.1, 2.0, 2.02, 2.1] if step.keep(t)]
    assert kept == [0.0, 0.1, 2.0, 2.1]


def test_odd_sides_become_even() -> None:
    assert even_size(65, 49) == (64, 48)
    assert even_size(64, 48) == (64, 48)


def test_a_truncated_upload_is_an_invalid_video(tmp_path: Path, shared_videos: Path) -> None:
    data = (shared_videos / "bigbuckbunny.mp4").read_bytes()
    clipped = tmp_path / "cut.mp4"
    clipped.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as caught:
        info = probe(clipped, "mov")
        list(read_frames(clipped, info, (64, 36)))
    assert caught.value.code == "invalid_video"


def test_noise_with_a_video_header_is_an_invalid_video(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40)
    with pytest.raises(VideoError) as caught:
        probe(fake, "mov")
    assert str(tmp_path) not in caught.value.message  # FFmpeg's reason, never a server path
