"""animegan-api convert: files and folders through the service's plans, offline."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image

from animegan_api.cli import main
from conftest import picture_bytes
from videos import make_clip


def test_convert_files_and_folders_reports_bad_files(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    (inputs / "nested").mkdir(parents=True)
    (inputs / "a.jpg").write_bytes(picture_bytes((90, 60), "JPEG"))
    (inputs / "nested" / "b.png").write_bytes(picture_bytes((40, 40), "PNG"))
    (inputs / "broken.jpg").write_bytes(b"not a picture")
    single = tmp_path / "c.webp"
    single.write_bytes(picture_bytes((30, 50), "WEBP"))
    out = tmp_path / "out"
    code = main(
        [
            "convert",
            str(inputs),
            str(single),
            "-o",
            str(out),
            "--weights-dir",
            str(weights_dir),
            "--format",
            "jpeg",
            "--keep-size",
        ]
    )
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]
    assert Image.open(out / "a.jpg").size == (90, 60)
    err = capsys.readouterr().err
    assert "converted 3, skipped 0 existing, failed 1" in err and "broken.jpg" in err


def test_convert_never_overwrites_without_the_flag(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "a.png"
    source.write_bytes(picture_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    assert main(["convert", str(source), "-o", str(out), "--weights-dir", str(weights_dir)]) == 0
    assert (out / "a.png").read_bytes() == b"keep me"
    assert main(["convert", str(source), "-o", str(out), "--weights-dir", str(weights_dir), "--overwrite"]) == 0
    assert (out / "a.png").read_bytes().startswith(b"\x89PNG")


def test_convert_unknown_style_exits_2(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["convert", str(tmp_path), "-o", str(tmp_path / "o"), "--weights-dir", str(weights_dir), "--style", "nope"]
        )
        == 2
    )
    assert "available: random" in capsys.readouterr().err


def test_convert_with_several_workers_and_name_collisions(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    (inputs / "b").mkdir(parents=True)
    for i in range(6):
        (inputs / f"p{i}.png").write_bytes(picture_bytes((40 + i, 30), "PNG"))
    (inputs / "b" / "p0.jpg").write_bytes(picture_bytes((20, 20), "JPEG"))  # same stem as p0.png
    out = tmp_path / "out"
    code = main(["convert", str(inputs), "-o", str(out), "--weights-dir", str(weights_dir), "--workers", "3"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(6)]
    assert Image.open(out / "p0.png").size == (20, 20)  # b/p0.jpg comes first in sorted order and keeps it
    err = capsys.readouterr().err
    assert "converted 6, skipped 0 existing, failed 1" in err and "img/s" in err
    assert "collision" in err and "p0.png would overwrite the output of" in err


@pytest.mark.real_weights
def test_convert_avatar_frames_faces_and_reports_pictures_without_one(
    weights_dir: Path, tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("face_03.jpg", "group_01.jpg", "landscape_01.jpg"):
        (inputs / name).write_bytes((shared / "photos" / name).read_bytes())
    out = tmp_path / "out"

    def command(source: Path, target: Path, *extra: str) -> list[str]:
        return ["convert", str(source), "-o", str(target), "--weights-dir", str(weights_dir), "--avatar", *extra]

    assert main(command(inputs, out, "--max-side", "96")) == 1
    assert sorted(p.name for p in out.iterdir()) == ["face_03.png", "group_01.png"]
    assert Image.open(out / "face_03.png").size == (96, 96)
    err = capsys.readouterr().err
    assert "converted 2, skipped 0 existing, failed 1" in err and "landscape_01.jpg: no face found" in err
    sheet = tmp_path / "sheet"
    assert main(command(inputs / "group_01.jpg", sheet, "--max-side", "64", "--face", "all")) == 0
    assert Image.open(sheet / "group_01.png").width > 3 * 64
    assert main(command(inputs, out, "--face", "left")) == 2
    assert "--face must be" in capsys.readouterr().err


def test_convert_a_video_to_a_named_file_with_its_sound(weights_dir: Path, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mov", size=(66, 50), frames=10, audio="aac")
    target = tmp_path / "out.mp4"
    arguments = ["convert", str(source), "-o", str(target), "--weights-dir", str(weights_dir), "--max-side", "64"]
    assert main(arguments) == 0
    with av.open(str(target)) as result:
        video = result.streams.video[0]
        assert (video.frames, video.codec_context.width, video.codec_context.height) == (10, 64, 48)
        assert [s.type for s in result.streams] == ["video", "audio"]
    assert main(arguments) == 0 and target.stat().st_size > 0  # an existing result is kept, not redone


def test_convert_a_folder_of_pictures_and_videos(weights_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "clip.mp4", frames=6)
    (folder / "photo.png").write_bytes(picture_bytes())
    out = tmp_path / "out"
    assert main(["convert", str(folder), "-o", str(out), "--weights-dir", str(weights_dir), "--fps", "12.5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "photo.png"]
    with av.open(str(out / "clip.mp4")) as result:
        assert result.streams.video[0].frames == 3
