"""A corpus of hostile and broken uploads, generated here, each with the status the API documents."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    files: list[tuple[str, tuple[Any, ...]]] | None = None
    data: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes of PNG that declare ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 256))
        + chunk(b"IEND", b"")
    )


def _huge_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: about the most one APP1 segment can hold
    exif[0x0112] = 1
    return _save(_noise(64, 48), "JPEG", exif=exif)


def _apng() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    return _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def _gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    return buffer.getvalue()


def _image(payload: bytes, filename: str = "photo.bin") -> list[tuple[str, tuple[Any, ...]]]:
    return [("image", (filename, payload, "application/octet-stream"))]


def _raw_multipart(disposition_extra: bytes, payload: bytes) -> bytes:
    """A hand-made multipart body, for bytes an HTTP client library would refuse to send."""
    return (
        b'--corpus\r\nContent-Disposition: form-data; name="image"; '
        + disposition_extra
        + b"\r\nContent-Type: image/jpeg\r\n\r\n"
        + payload
        + b"\r\n--corpus--\r\n"
    )


def build() -> list[Case]:
    jpeg = _save(_noise(96, 64), "JPEG")
    png = _save(_noise(96, 64), "PNG")
    cases = [
        Case("empty body", 422, content=b"", headers={"content-type": "multipart/form-data; boundary=x"}),
        Case("no body at all", 422),
        Case("zero-byte file", 415, _image(b"")),
        Case(
            "random bytes behind a JPEG magic", 400, _image(b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(4000))
        ),
        Case(
            "random bytes behind a PNG magic", 400, _image(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).bytes(4000))
        ),
        Case("decompression bomb PNG 100000x100000", 413, _image(png_bomb())),
        Case("JPEG with a 60 KB EXIF block", 200, _image(_huge_exif_jpeg())),
        Case("1x1 picture", 200, _image(_save(Image.new("RGB", (1, 1), "red"), "PNG"))),
        Case("1x20000 strip", 200, _image(_save(Image.new("RGB", (1, 20000), "red"), "PNG"))),
        Case("animated GIF", 200, _image(_gif())),
        Case("animated PNG", 200, _image(_apng())),
        Case("16-bit PNG", 200, _image(_save(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)), "PNG"))),
        Case("CMYK JPEG", 200, _image(_save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))),
        Case("SVG", 415, _image(b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "x.svg")),
        Case("HTML", 415, _image(b"<!doctype html><html><body>hi</body></html>", "x.jpg")),
        Case("ZIP", 415, _image(_zip(), "x.png")),
        Case("PSD header", 415, _image(b"8BPS\x00\x01" + b"\x00" * 200)),
        Case("FITS header", 415, _image(b"SIMPLE  =                    T" + b" " * 2850)),
        Case("wrong field name", 422, [("picture", ("x.jpg", jpeg, "image/jpeg"))]),
        Case(
            "two image parts", 422, [("image", ("a.jpg", jpeg, "image/jpeg")), ("image", ("b.png", png, "image/png"))]
        ),
        Case(
            "non-UTF-8 filename",
            200,
            content=_raw_multipart(b'filename="caf\xe9\xff.jpg"', jpeg),
            headers={"content-type": "multipart/form-data; boundary=corpus"},
        ),
        Case("path traversal style", 404, _image(jpeg), {"style": "../../etc/passwd"}),
        Case("huge max_side", 422, _image(jpeg), {"max_side": "9" * 40}),
        Case("negative max_side", 422, _image(jpeg), {"max_side": "-5"}),
        Case("max_side not a number", 422, _image(jpeg), {"max_side": "NaN"}),
        Case("quality too high", 422, _image(jpeg), {"quality": "1000"}),
        Case("quality negative", 422, _image(jpeg), {"quality": "-1"}),
        Case("unknown format", 422, _image(jpeg), {"format": "bmp"}),
    ]
    for fraction in (0.1, 0.5, 0.9):
        cases.append(Case(f"JPEG cut at {fraction:.0%}", 400, _image(jpeg[: int(len(jpeg) * fraction)])))
        cases.append(Case(f"PNG cut at {fraction:.0%}", 400, _image(png[: int(len(png) * fraction)])))
    return cases
