"""Writing results: the source's timestamps and frame count, every sound stream, copied where MP4 carries it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from animegan_api.pictures.video import probe, read_frames
from animegan_api.pictures.video_writer import VideoWriter
from videos import make_clip


def _rewrite(source: Path, target: Path, fmt: str = "mov") -> None:
    """The source through the writer unchanged in size (a stand-in for the model)."""
    info = probe(source, fmt)
    size = (info.width, info.height)
    writer = VideoWriter(target, source, info, size, info.rate)
    for frame in read_frames(source, info, size):
        writer.write(255 - frame.rgb, frame.pts)
    writer.close()


def _packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        streams = container.streams.audio if kind == "audio" else container.streams.video
        if not streams:
            return []
        return [(p.pts, bytes(p)) for p in container.demux(streams[0]) if p.size]


def _samples(path: Path) -> np.ndarray:
    """The first sound stream's first channel, decoded to floats at 48 kHz: what a listener would hear."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48_000)
    with av.open(str(path)) as container:
        chunks = [f.to_ndarray()[0] for frame in container.decode(audio=0) for f in resampler.resample(frame)]
    return np.concatenate(chunks).astype(np.float64)


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [round(float(f.pts * f.time_base), 4) for f in container.decode(video=0)]


def test_5_1_aac_comes_through_packet_for_packet(tmp_path: Path, shared_videos: Path) -> None:
    source, result = shared_videos / "bigbuckbunny.mp4", tmp_path / "out.mp4"
    _rewrite(source, result)
    assert [data for _, data in _packets(result, "audio")] == [data for _, data in _packets(source, "audio")]
    with av.open(str(result)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        assert audio.codec_context.channels == 6
        assert (video.codec_context.name, video.codec_context.pix_fmt, video.frames) == ("h264", "yuv420p", 132)
        assert video.average_rate == 25


def test_29_97_stays_exact_with_the_same_frame_count_and_duration(tmp_path: Path, shared_videos: Path) -> None:
    source, result = shared_videos / "carphone_pristine.mp4", tmp_path / "out.mp4"
    _rewrite(source, result)
    with av.open(str(result)) as container:
        video = container.streams.video[0]
        assert video.average_rate == Fraction(30000, 1001)
        assert video.frames == 120
        assert not container.streams.audio
    assert _frame_times(result) == _frame_times(source)


def test_a_variable_rate_stays_variable(tmp_path: Path) -> None:
    times = [0, 0.04, 0.1, 0.13, 0.3, 0.31, 0.5, 0.7, 0.72, 0.9]
    source = make_clip(tmp_path / "vfr.mp4", times=times)
    result = tmp_path / "out.mp4"
    _rewrite(source, result)
    assert _frame_times(result) == times


def test_opus_in_webm_is_re_encoded_to_aac(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.webm", frames=50, container="webm", codec="libvpx-vp9", audio="libopus")
    result = tmp_path / "out.mp4"
    _rewrite(source, result, "matroska")
    with av.open(str(result)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    heard, played = _samples(result), _samples(source)
    assert len(heard) == pytest.approx(len(played), abs=2048)  # the same length, within a codec frame or two
    level = np.sqrt(np.mean(heard**2))
    assert level == pytest.approx(np.sqrt(np.mean(played**2)), rel=0.1)  # the tone is there, as loud
    spectrum = np.abs(np.fft.rfft(heard[4800:43200]))
    assert np.argmax(spectrum) * 48_000 / 38_400 == pytest.approx(440, abs=5)  # and it is still A440


def test_the_file_starts_with_its_index(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mp4", audio="aac")
    result = tmp_path / "out.mp4"
    _rewrite(source, result)
    data = result.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")
