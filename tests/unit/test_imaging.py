from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from animegan_api.pictures import imaging
from conftest import picture_bytes

LIMITS = {"max_pixels": 40_000_000, "max_side": 512, "multiple": 4}


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("size", "max_side", "multiple", "expected"),
    [
        ((1280, 853), 512, 4, (512, 340)),
        ((853, 1280), 512, 4, (340, 512)),
        ((100, 60), 512, 4, (100, 60)),  # never upscaled
        ((101, 61), 512, 4, (100, 60)),  # rounded down to the multiple
        ((1, 1), 512, 4, (8, 8)),  # the generator's minimum
        ((1, 20000), 512, 4, (8, 512)),
        ((3840, 2160), 1024, 8, (1024, 576)),
    ],
)
def test_plan_size(size: tuple[int, int], max_side: int, multiple: int, expected: tuple[int, int]) -> None:
    assert imaging.plan_size(*size, max_side, multiple) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_accepted_format_decodes_from_its_bytes(fmt: str) -> None:
    prepared = imaging.prepare(picture_bytes((64, 48), fmt), **LIMITS)
    assert prepared.rgb.mode == "RGB"
    assert prepared.rgb.size == (64, 48)
    assert prepared.source_format == fmt
    red, green, blue = np.asarray(prepared.rgb, dtype=int).reshape(-1, 3).mean(axis=0)
    assert red > 150 and green < 130 and blue < 100


def test_large_photo_is_scaled_to_max_side_keeping_aspect() -> None:
    prepared = imaging.prepare(picture_bytes((1280, 853), "JPEG"), **LIMITS)
    assert prepared.rgb.size == (512, 340)
    assert prepared.original_size == (1280, 853)


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # red corner at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    prepared = imaging.prepare(_save(stored, "JPEG", exif=exif, quality=95), max_pixels=10**6, max_side=512, multiple=4)
    assert prepared.rgb.size == (20, 40)
    pixels = np.asarray(prepared.rgb, dtype=int)
    assert pixels[2, -3, 0] > 200 and pixels[2, 2, 2] > 200  # red moved to the top-right


def test_exif_orientation_with_downscale_keeps_the_rotated_shape() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    data = _save(Image.new("RGB", (2000, 1000), (10, 200, 10)), "JPEG", exif=exif)
    prepared = imaging.prepare(data, **LIMITS)
    assert prepared.rgb.size == (256, 512)
    assert prepared.original_size == (1000, 2000)


def test_rgba_keeps_its_alpha_through_to_the_output() -> None:
    source = Image.new("RGBA", (40, 40), (10, 20, 30, 255))
    source.putalpha(Image.linear_gradient("L").resize((40, 40)))
    prepared = imaging.prepare(_save(source, "PNG"), **LIMITS)
    assert prepared.alpha is not None
    result = imaging.finish(Image.new("RGB", prepared.rgb.size), prepared, keep_size=False)
    assert result.mode == "RGBA"
    assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(source.getchannel("A")))


def test_palette_with_transparency_keeps_alpha() -> None:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 8, 16))
    prepared = imaging.prepare(_save(image, "PNG", transparency=1), **LIMITS)
    alpha = np.asarray(prepared.alpha)
    assert alpha[:, :8].max() == 0 and alpha[:, 8:].min() == 255


@pytest.mark.parametrize(("mode", "value", "expected"), [("L", 128, 128), ("1", 1, 255), ("LA", (90, 255), 90)])
def test_greyscale_modes_become_rgb(mode: str, value: object, expected: int) -> None:
    prepared = imaging.prepare(picture_bytes((16, 16), "PNG", mode, value), **LIMITS)
    assert prepared.rgb.mode == "RGB"
    assert np.asarray(prepared.rgb)[0, 0].tolist() == [expected] * 3


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    array = np.array([[0, 32896, 65535, 65535]], dtype=np.uint16).repeat(8, axis=0).repeat(4, axis=1)
    image = Image.fromarray(array)
    assert image.mode.startswith("I")
    prepared = imaging.prepare(_save(image, "PNG"), max_pixels=1000, max_side=512, multiple=4)
    row = np.asarray(prepared.rgb)[0, :, 0]
    assert row[0] == 0 and row[5] == 128 and row[-1] == 255


def test_sixteen_bit_rgb_decodes() -> None:
    rgb16 = np.zeros((8, 8, 3), dtype=">u2")
    rgb16[..., 0] = 65535
    raw = rgb16.tobytes()
    image = Image.frombytes("RGB", (8, 8), raw, "raw", "RGB;16B")
    prepared = imaging.prepare(_save(image, "PNG"), **LIMITS)
    assert np.asarray(prepared.rgb)[0, 0].tolist() == [255, 0, 0]


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour() -> None:
    data = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red in CMYK
    prepared = imaging.prepare(data, **LIMITS)
    red, green, blue = np.asarray(prepared.rgb, dtype=int)[8, 8]
    assert red > 200 and green < 60 and blue < 60


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = np.asarray(imaging.prepare(buffer.getvalue(), **LIMITS).rgb, dtype=int)[8, 8]
    assert red > 200 and blue < 50


def test_too_many_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(imaging.ImageTooLarge, match="limit"):
        imaging.prepare(picture_bytes((100, 100), "PNG"), max_pixels=9_999, max_side=512)


def test_decompression_bomb_header_is_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 500

    def no_decoding(self: object) -> None:
        raise AssertionError("a pixel was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(imaging.ImageTooLarge):
        imaging.prepare(bomb, **LIMITS)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"%PDF-1.4\n...", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"PK\x03\x04" + b"\0" * 40],
)
def test_non_pictures_are_unsupported(data: bytes) -> None:
    with pytest.raises(imaging.UnsupportedImage):
        imaging.prepare(data, **LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_pictures_are_corrupt(fmt: str, fraction: float) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    data = _save(noise, fmt)
    with pytest.raises(imaging.CorruptImage):
        imaging.prepare(data[: int(len(data) * fraction)], **LIMITS)


def test_magic_header_with_random_bytes_is_an_error() -> None:
    data = b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(2000)
    with pytest.raises((imaging.CorruptImage, imaging.UnsupportedImage)):
        imaging.prepare(data, **LIMITS)


def test_batch_round_trip_is_exact() -> None:
    array = np.random.default_rng(2).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    batch = imaging.to_batch(Image.fromarray(array))
    assert batch.shape == (1, 3, 12, 20) and batch.dtype == np.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert np.array_equal(np.asarray(imaging.from_output(batch[0])), array)


def test_finish_can_restore_the_original_size() -> None:
    prepared = imaging.prepare(picture_bytes((1000, 500), "JPEG"), **LIMITS)
    result = imaging.finish(Image.new("RGB", prepared.rgb.size), prepared, keep_size=True)
    assert result.size == (1000, 500)


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8\xff"), ("webp", b"RIFF")])
def test_encode_produces_the_asked_format(fmt: imaging.OutputFormat, magic: bytes) -> None:
    data = imaging.encode(Image.new("RGBA", (16, 16), (1, 2, 3, 128)), fmt, 80)
    assert data.startswith(magic)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == ("RGB" if fmt == "jpeg" else "RGBA")


# Property tests: any valid picture round-trips with the promised size and mode.
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_MODES_BY_FORMAT = {
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "I;16"],
    "JPEG": ["RGB", "L", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["RGB", "L", "P"],
    "TIFF": ["RGB", "RGBA", "L", "CMYK"],
    "GIF": ["P", "L"],
}
_HAS_ALPHA = {"RGBA", "LA"}


@st.composite
def pictures(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], bool]:
    fmt = draw(st.sampled_from(sorted(_MODES_BY_FORMAT)))
    mode = draw(st.sampled_from(_MODES_BY_FORMAT[fmt]))
    size = (draw(st.integers(1, 300)), draw(st.integers(1, 300)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    if mode in _HAS_ALPHA:  # real transparency: a fully opaque alpha may legitimately be dropped by encoders
        image.putalpha(Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)))
    return _save(image, fmt), size, mode in _HAS_ALPHA


@given(
    picture=pictures(),
    max_side=st.integers(16, 400),
    multiple=st.sampled_from([1, 4, 8, 16]),
    fmt=st.sampled_from(["png", "jpeg", "webp"]),
    keep_size=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_picture_round_trips_with_the_promised_size_and_mode(
    picture: tuple[bytes, tuple[int, int], bool],
    max_side: int,
    multiple: int,
    fmt: imaging.OutputFormat,
    keep_size: bool,
) -> None:
    data, size, has_alpha = picture
    prepared = imaging.prepare(data, max_pixels=10**6, max_side=max_side, multiple=multiple)
    assert prepared.rgb.mode == "RGB"
    assert prepared.rgb.size == imaging.plan_size(*size, max_side, multiple)
    assert all(side % multiple == 0 for side in prepared.rgb.size)
    assert (prepared.alpha is not None) == has_alpha
    batch = imaging.to_batch(prepared.rgb)
    assert batch.shape == (1, 3, prepared.rgb.size[1], prepared.rgb.size[0])
    finished = imaging.finish(imaging.from_output(batch[0]), prepared, keep_size)
    encoded = imaging.encode(finished, fmt, 80)
    result = Image.open(io.BytesIO(encoded))
    assert result.size == (size if keep_size else prepared.rgb.size)
    assert result.mode == ("RGBA" if has_alpha and fmt != "jpeg" else "RGB")
