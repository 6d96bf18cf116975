"""Decode, validate, resize and encode pictures: pure functions, no server state.

The decoder is the part of the service exposed to hostile bytes, so it only
ever runs the decoders of the accepted formats, checks the pixel count from
the header before any pixel is decoded, and reports every failure as an
:class:`ImageError` subclass that the API maps to a status code.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from animegan_api.failures import Refusal

__all__ = [
    "ACCEPTED_FORMATS",
    "MEDIA_TYPES",
    "MIN_SIDE",
    "CorruptImage",
    "ImageError",
    "ImageTooLarge",
    "OutputFormat",
    "Prepared",
    "Sizes",
    "UnsupportedImage",
    "decode",
    "encode",
    "finish",
    "fit",
    "from_output",
    "has_accepted_signature",
    "plan_size",
    "prepare",
    "public_formats",
    "sizes",
    "to_batch",
]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # MPO files come through the JPEG factory
OutputFormat = Literal["png", "jpeg", "webp"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MIN_SIDE = 8  # the generator's reflection pads need at least 2 pixels after two stride-2 convs
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class ImageError(Refusal):
    """An upload that cannot be turned into a picture; each kind has its stable code."""

    CODE: ClassVar[str] = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


class UnsupportedImage(ImageError):
    """Not a picture, or a format the service does not decode."""

    CODE = "unsupported_image"


class CorruptImage(ImageError):
    """A supported format whose data is truncated or broken."""

    CODE = "corrupt_image"


class ImageTooLarge(ImageError):
    """More pixels than the service is configured to decode."""

    CODE = "image_too_large"


@dataclass(frozen=True)
class Prepared:
    """A decoded picture ready for a generator, plus what is needed to rebuild the output."""

    rgb: Image.Image
    alpha: Image.Image | None
    original_size: tuple[int, int]
    source_format: str


def plan_size(width: int, height: int, max_side: int, multiple: int) -> tuple[int, int]:
    """Processing size: longest side at most ``max_side``, never upscaled, sides a multiple of ``multiple``.

    Rounding goes down so the picture never grows; only a picture smaller than
    the generator's minimum is padded up to it.
    """
    scale = min(1.0, max_side / max(width, height))
    floor = max(multiple, math.ceil(MIN_SIDE / multiple) * multiple)

    def fit(side: int) -> int:
        return max(floor, int(side * scale) // multiple * multiple)

    return fit(width), fit(height)


def decode(data: bytes, *, max_pixels: int, scale: float = 1.0) -> Prepared:
    """Decode ``data`` upright (and its alpha, if any), at no less than ``scale`` of its full size.

    JPEG decoders shrink by 1/2, 1/4 or 1/8 while decoding; a request that
    needs a small picture never holds the full-size one.
    """
    image = _open(data, max_pixels)
    oriented, source_format = _oriented_size(image), image.format or "unknown"
    _draft(image, scale)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb, alpha = _split_alpha(image)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImage(f"the picture data is truncated or corrupt ({_short(exc)})") from exc
    return Prepared(rgb, alpha, oriented, source_format)


def fit(source: Prepared, size: tuple[int, int]) -> Prepared:
    """The decoded picture at processing ``size``; its alpha is fitted to the output later, by :func:`finish`."""
    return dataclasses.replace(source, rgb=_resize(source.rgb, size))


def prepare(data: bytes, *, max_pixels: int, max_side: int, multiple: int = 1) -> Prepared:
    """Decode ``data`` into an RGB picture at processing size (and its alpha, if any)."""
    planned = sizes(data, max_pixels=max_pixels, max_side=max_side, multiple=multiple)
    return fit(decode(data, max_pixels=max_pixels, scale=planned.scale), planned.processed)


@dataclass(frozen=True)
class Sizes:
    """What decoding an upload will produce, read from its header alone: the sizes its memory follows."""

    original: tuple[int, int]
    processed: tuple[int, int]
    decoded_pixels: int

    @property
    def scale(self) -> float:
        """How far the processed picture is shrunk from the original: what the decoder may skip."""
        return max(self.processed[0] / self.original[0], self.processed[1] / self.original[1])


def sizes(data: bytes, *, max_pixels: int, max_side: int, multiple: int = 1) -> Sizes:
    """The sizes :func:`prepare` will produce for ``data``, without decoding a pixel."""
    image = _open(data, max_pixels)
    oriented = _oriented_size(image)
    target = plan_size(*oriented, max_side, multiple)
    scale = max(target[0] / oriented[0], target[1] / oriented[1])
    width, height = image.size
    if image.format in ("JPEG", "MPO"):  # draft decodes at 1/2, 1/4 or 1/8, never below the target
        reduction = 1
        while reduction < 8 and scale * reduction * 2 <= 1:
            reduction *= 2
        width, height = math.ceil(width / reduction), math.ceil(height / reduction)
    return Sizes(oriented, target, width * height)


def to_batch(rgb: Image.Image) -> np.ndarray:
    """NCHW float32 in [-1, 1], the input convention of every AnimeGAN generator."""
    array = np.asarray(rgb, dtype=np.float32)
    return (array.transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32, copy=False)


def from_output(output: np.ndarray) -> Image.Image:
    """One CHW generator output in [-1, 1] back to an RGB picture."""
    pixels = np.clip((output.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)
    return Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB")


def finish(result: Image.Image, prepared: Prepared, keep_size: bool) -> Image.Image:
    """Restore the original size when asked and put the input's alpha channel back."""
    size = prepared.original_size if keep_size else result.size
    if result.size != size:
        result = _resize(result, size)
    if prepared.alpha is None:
        return result
    alpha = prepared.alpha if prepared.alpha.size == size else _resize(prepared.alpha, size)
    result = result.copy()
    result.putalpha(alpha)
    return result


def encode(image: Image.Image, fmt: OutputFormat, quality: int) -> bytes:
    """Encode for the wire. JPEG cannot carry alpha, so it is dropped there."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif fmt == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=False)
    else:
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise UnsupportedImage("the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the picture has too many pixels ({_short(exc)})") from exc
    except UnidentifiedImageError as exc:
        if has_accepted_signature(data):
            raise CorruptImage("the data starts like an accepted format but cannot be read") from exc
        raise UnsupportedImage(f"not a supported picture; accepted formats: {', '.join(public_formats())}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImage(f"the picture header is corrupt ({_short(exc)})") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage("the picture declares an empty size")
    if width * height > max_pixels:
        raise ImageTooLarge(f"the picture has {width}x{height} pixels; the limit is {max_pixels} pixels")
    return image


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not stop the picture itself
        orientation = 1
    width, height = image.size
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _draft(image: Image.Image, scale: float) -> None:
    """Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 while decoding, never below the target."""
    if image.format not in ("JPEG", "MPO") or image.mode not in ("RGB", "L", "CMYK"):
        return
    stored_w, stored_h = image.size
    image.draft(image.mode, (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    mode = image.mode
    if (mode == "P" and "transparency" in image.info) or mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBa", "La"):
        image = image.convert(mode[:-1] + "A")
        mode = image.mode
    if mode in ("RGBA", "LA"):
        return image.convert("RGB"), image.getchannel("A")
    if mode.startswith("I") or mode == "F":
        return _wide_to_rgb(image), None
    return image.convert("RGB"), None


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale: scale to 8 bits instead of clipping at 255."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode != "F":
        array = array / 257.0
    grey = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def has_accepted_signature(data: bytes) -> bool:
    """Magic bytes of an accepted format: broken data behind them is corrupt (400), not unsupported (415)."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def public_formats() -> list[str]:
    return ["JPEG", "PNG", "WebP", "BMP", "TIFF", "GIF"]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
