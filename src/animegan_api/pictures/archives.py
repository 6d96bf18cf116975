"""ZIP batches read defensively: bounded before anything is inflated, names that never become paths.

Limits come from the central directory (entry count, total uncompressed
size, each entry's compression ratio), so a zip bomb is refused before one
byte is inflated; reading an entry stops one byte past its declared size, so
a header that lies cannot inflate more. Nested archives are refused: a batch
is pictures. Output names are made from an entry's position and the letters
of its base name only, so ``../../etc/passwd`` can never be written anywhere.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from animegan_api.failures import Refusal

__all__ = ["ArchiveError", "Entry", "Limits", "inspect", "output_name", "read_entry"]

_ARCHIVE_SUFFIXES = (".zip", ".rar", ".7z", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst")
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ArchiveError(Refusal):
    """A ZIP refused as a whole: ``invalid_archive`` (422) or ``archive_too_large`` (413)."""


@dataclass(frozen=True)
class Limits:
    entries: int
    total_bytes: int
    ratio: float


@dataclass(frozen=True)
class Entry:
    """One picture of a batch: its place in the archive, the name it was sent with, its declared size."""

    index: int
    name: str
    size: int


def inspect(path: Path, limits: Limits) -> list[Entry]:
    """The batch's pictures, in archive order, or :class:`ArchiveError` before anything large is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if _is_picture_entry(info)]
            _check_limits(infos, limits)
            for info in infos:
                _check_entry(archive, info)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ArchiveError("invalid_archive", f"the ZIP cannot be read ({exc})") from exc
    if not infos:
        raise ArchiveError("invalid_archive", "the ZIP holds no files")
    return [Entry(i, info.filename, info.file_size) for i, info in enumerate(infos)]


def read_entry(path: Path, entry: Entry) -> bytes:
    """The entry's bytes; never more than its declared size."""
    with zipfile.ZipFile(path) as archive:
        info = [info for info in archive.infolist() if _is_picture_entry(info)][entry.index]
        with archive.open(info) as stream:
            data = stream.read(entry.size + 1)
    if len(data) > entry.size:
        raise ArchiveError("invalid_archive", f"{entry.name} holds more than its header declares")
    return data


def output_name(entry: Entry, suffix: str) -> str:
    """A flat, safe file name for an entry's result: its position, then the letters of its base name."""
    stem = PurePosixPath(entry.name.replace("\\", "/")).stem
    cleaned = _UNSAFE.sub("_", stem).strip("._")[:80] or "picture"
    return f"{entry.index:04d}_{cleaned}{suffix}"


def _is_picture_entry(info: zipfile.ZipInfo) -> bool:
    """Files only; folders and the metadata macOS adds (``__MACOSX/``, ``._*``) are not pictures."""
    name = info.filename.replace("\\", "/")
    base = name.rsplit("/", 1)[-1]
    return not info.is_dir() and not name.startswith("__MACOSX/") and not base.startswith(".") and bool(base)


def _check_limits(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(infos) > limits.entries:
        raise ArchiveError("archive_too_large", f"the ZIP holds {len(infos)} files; at most {limits.entries}")
    total = sum(info.file_size for info in infos)
    if total > limits.total_bytes:
        raise ArchiveError(
            "archive_too_large", f"the ZIP inflates to {total} bytes; at most {limits.total_bytes} in all"
        )
    for info in infos:
        if info.file_size > limits.ratio * max(info.compress_size, 1) and info.file_size > 1024 * 1024:
            raise ArchiveError(
                "archive_too_large",
                f"{info.filename} is compressed more than {limits.ratio:g} to 1; that is a zip bomb, not a picture",
            )


def _check_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise ArchiveError("invalid_archive", f"{info.filename} is encrypted")
    with archive.open(info) as stream:
        head = stream.read(8)
    if info.filename.lower().endswith(_ARCHIVE_SUFFIXES) or head.startswith(_ARCHIVE_MAGIC):
        raise ArchiveError("invalid_archive", f"{info.filename} is an archive; a batch holds pictures only")
