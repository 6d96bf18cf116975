"""ZIP batches: bombs, nesting and hostile names refused or neutralised before any picture is decoded."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from animegan_api.pictures.archives import ArchiveError, Entry, Limits, inspect, output_name, read_entry

_LIMITS = Limits(entries=10, total_bytes=10 * 1024 * 1024, ratio=100)


def _zip(path: Path, files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_pictures_are_listed_in_order_without_folders_or_mac_metadata(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"b.png": b"1", "dir/a.jpg": b"22", "__MACOSX/._a.jpg": b"x", ".hidden": b"y"})
    entries = inspect(archive, _LIMITS)
    assert [(e.index, e.name, e.size) for e in entries] == [(0, "b.png", 1), (1, "dir/a.jpg", 2)]
    assert read_entry(archive, entries[1]) == b"22"


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {f"{i}.png": b"x" for i in range(11)})
    with pytest.raises(ArchiveError) as caught:
        inspect(archive, _LIMITS)
    assert caught.value.code == "archive_too_large"


def test_a_zip_bomb_is_refused_from_the_directory_alone(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.png": bytes(8 * 1024 * 1024)})
    assert archive.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="zip bomb"):
        inspect(archive, _LIMITS)
    with pytest.raises(ArchiveError, match="inflates to"):
        inspect(archive, Limits(10, 1024 * 1024, 10_000))


def test_nested_archives_are_refused(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("x.png", b"x")
    for name in ("inner.zip", "looks_like_a.png"):
        archive = _zip(tmp_path / f"{name}.zip", {name: inner.getvalue()})
        with pytest.raises(ArchiveError) as caught:
            inspect(archive, _LIMITS)
        assert caught.value.code == "invalid_archive"


def test_not_a_zip_and_an_empty_zip_are_invalid(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + bytes(100))
    empty = _zip(tmp_path / "empty.zip", {})
    for path in (broken, empty):
        with pytest.raises(ArchiveError) as caught:
            inspect(path, _LIMITS)
        assert caught.value.code == "invalid_archive"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "0003_passwd.png"),
        ("/abs/olute.jpg", "0003_olute.png"),
        ("C:\\Users\\me\\photo 1.jpg", "0003_photo_1.png"),
        ("..", "0003_picture.png"),
        ("ünïcødé.jpg", "0003_n_c_d.png"),
    ],
)
def test_names_never_become_paths(name: str, expected: str) -> None:
    assert output_name(Entry(3, name, 1), ".png") == expected
