"""Where a job's files are kept: a folder (one disk, or a volume every replica mounts) or S3-compatible storage.

A job has an input (its upload) and, once it has succeeded, a result. A run
works on local files: with a folder, in the job's own folder; with object
storage, in a scratch folder of this replica's that the input is fetched into
and the result is put back from. Results are read back one byte range at a
time (:class:`Download`), or, from object storage that can sign URLs, handed to
the client as a link to fetch itself (:class:`Redirect`).
"""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from animegan_api.failures import Refusal

__all__ = ["CHUNK", "Download", "FolderFiles", "JobFiles", "LinkHeaders", "Redirect", "Span", "gone"]

CHUNK = 1 << 20  # bytes read and sent at a time: a result is never held in memory whole
Span = tuple[int, int]  # a byte range, first byte and one past the last


@dataclass(frozen=True)
class Download:
    """A result's bytes, or one range of them, as they are read."""

    size: int  # the whole result's
    span: Span | None  # None: all of it
    chunks: AsyncIterator[bytes]
    etag: str | None = None


@dataclass(frozen=True)
class Redirect:
    """A signed link the client fetches the result from, straight from the store."""

    url: str


@dataclass(frozen=True)
class LinkHeaders:
    """What a signed link's response should say the file is (object stores set these headers for the client)."""

    media_type: str
    disposition: str


class JobFiles(Protocol):
    async def start(self) -> None:
        """Make sure the store can be used; drop what a crashed run left on this replica."""

    async def keep_input(self, job_id: str, upload: Path) -> None:
        """Take ``upload`` (a file on this replica) as the job's input; it is moved, not copied."""

    async def workspace(self, job_id: str) -> Path:
        """A local folder holding the job's input as ``input``, where its run writes its result."""

    async def keep_result(self, job_id: str, name: str) -> None:
        """The result ``name`` the run wrote in its workspace becomes the job's result."""

    async def release(self, job_id: str) -> None:
        """The run is over: this replica's copies of the job's files may go."""

    async def clear(self, job_id: str, keep: str | None) -> None:
        """A finished job keeps only its result ``keep`` (None: nothing)."""

    async def remove(self, job_id: str) -> None:
        """Every file of the job."""

    async def result(
        self, job_id: str, name: str, size: int, span: Span | None, link: LinkHeaders
    ) -> Download | Redirect:
        """The job's result, or the range ``span`` of it; a :class:`Redirect` where the store signs links."""

    async def close(self) -> None:
        """Transfers in progress end; nothing more is sent."""


class FolderFiles:
    """Each job's files in ``folder / job_id``, read and written in place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def start(self) -> None:
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)

    async def keep_input(self, job_id: str, upload: Path) -> None:
        folder = self.folder / job_id
        await asyncio.to_thread(folder.mkdir, parents=True)
        await asyncio.to_thread(shutil.move, upload, folder / "input")

    async def workspace(self, job_id: str) -> Path:
        return self.folder / job_id

    async def keep_result(self, job_id: str, name: str) -> None:
        """The result is already where it is kept."""

    async def release(self, job_id: str) -> None:
        """The run worked on the kept files themselves."""

    async def clear(self, job_id: str, keep: str | None) -> None:
        def unlink() -> None:
            for path in (self.folder / job_id).glob("*"):
                if path.name != keep:
                    path.unlink(missing_ok=True)

        await asyncio.to_thread(unlink)

    async def remove(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.folder / job_id, True)

    async def result(self, job_id: str, name: str, size: int, span: Span | None, link: LinkHeaders) -> Download:
        try:  # opened now: a missing file is refused before any byte is sent
            handle = await asyncio.to_thread((self.folder / job_id / name).open, "rb")
        except FileNotFoundError:
            raise gone("result") from None
        return Download(size, span, _read(handle, span or (0, size)))

    async def close(self) -> None:
        """Nothing is sent anywhere."""


def gone(what: str) -> Refusal:
    """A job whose ``what`` (input, result) the store no longer holds: deleted by hand, or by a bucket's rules."""
    return Refusal("job_not_found", f"the job's {what} is no longer in the job store")


async def _read(handle: io.BufferedReader, span: Span) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(handle.seek, span[0])
        left = span[1] - span[0]
        while left > 0 and (chunk := await asyncio.to_thread(handle.read, min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()
