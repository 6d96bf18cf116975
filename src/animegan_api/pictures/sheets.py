"""Captioned contact sheets: how a comparison of styles, or every face of a group photo, comes back as one picture."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["contact_sheet"]


def contact_sheet(tiles: list[tuple[str, Image.Image]], tile_size: tuple[int, int], columns: int = 3) -> Image.Image:
    """A captioned grid of pictures, each fitted into ``tile_size``: how people choose a style."""
    width, height = tile_size
    gap, caption_height = 8, 22
    rows = math.ceil(len(tiles) / columns)
    columns = min(columns, len(tiles))
    sheet = Image.new("RGB", (gap + columns * (width + gap), gap + rows * (height + caption_height + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _caption_font()
    for index, (caption, picture) in enumerate(tiles):
        row, column = divmod(index, columns)
        left, top = gap + column * (width + gap), gap + row * (height + caption_height + gap)
        fitted = ImageOps.contain(picture.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        sheet.paste(fitted, (left + (width - fitted.width) // 2, top + (height - fitted.height) // 2))
        text = _fit_text(draw, caption, font, width)
        draw.text(
            (left + (width - draw.textlength(text, font=font)) / 2, top + height + 4), text, fill="black", font=font
        )
    return sheet


def _caption_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)
    except (TypeError, OSError):  # Pillow without FreeType only has the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text
