"""What one request will cost before it decodes: bytes of memory and seconds of model time.

Read from the upload's header (:func:`imaging.sizes`), the style's working
memory and its learned speed, so a request that can never fit is refused at
once, with the largest ``max_side`` that would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from animegan_api.pictures import imaging
from animegan_api.runtime.memory import Cost, LinearCost, MiB
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.plans import Price

__all__ = [
    "FALLBACK",
    "Need",
    "PictureBytes",
    "largest_square_side",
    "memory_need",
    "picture_bytes",
    "plan_need",
    "time_limit_side",
]

# Where a style's memory could not be measured (no peak counter): about 1.2x the worst measured, the
# AnimeGANv2 ONNX graph's 2 KB a pixel at 1024 and 2048 px.
FALLBACK = LinearCost(fixed=64 * 1024 * 1024, per_pixel=2500.0)
_LARGEST_SIDE = 1 << 14


@dataclass(frozen=True)
class Need:
    """A request's predicted bytes, and the same request's bytes at any other ``max_side``."""

    nbytes: int
    at_side: Callable[[int], int]
    multiple: int

    def largest_side(self, allowance: int) -> int:
        """The largest ``max_side`` (a multiple of the size rule) whose request fits ``allowance`` bytes; 0 if none."""
        low, high = 0, _LARGEST_SIDE // self.multiple  # in multiples; at_side grows with the side
        while low < high:
            middle = (low + high + 1) // 2
            if self.at_side(middle * self.multiple) <= allowance:
                low = middle
            else:
                high = middle - 1
        return low * self.multiple

    def refusal(self, what: str, capacity: int, holder: str, size_field: str = "max_side") -> str:
        """Why it cannot run, in MiB: the need rounded up and the capacity down, so the two never read equal."""
        return (
            f"{what} needs {math.ceil(self.nbytes / MiB)} MiB, more than the {capacity // MiB} MiB one {holder} "
            f"may have; the largest {size_field} that fits is {self.largest_side(capacity)}"
        )


def memory_need(
    styles: list[LoadedStyle], sizes: imaging.Sizes, keep_size: bool, held_bytes: int = 0, pieces: int = 1
) -> Need:
    """The peak of a request: its decode, its most demanding forward with the pictures beside it, or its answer.

    A comparison runs its ``pieces`` one by one; ``held_bytes`` are pictures
    made from the decode that stay until the answer (face cuts, a video's frames in flight).
    """
    costs: list[Cost] = [style.cost or FALLBACK for style in styles]
    multiple = max(style.size_multiple for style in styles)
    original = sizes.original[0] * sizes.original[1]

    def at(processed: tuple[int, int]) -> int:
        width, height = processed
        forward = max(cost.forward_bytes(width, height) for cost in costs)
        output = original if keep_size else width * height
        pictures = picture_bytes(sizes.decoded_pixels, width * height, output, held_bytes, pieces)
        return max(pictures.decoding, forward + pictures.beside_forward, pictures.answering)

    def at_side(side: int) -> int:
        return at(imaging.plan_size(*sizes.original, max_side=side, multiple=multiple))

    return Need(at(sizes.processed), at_side, multiple)


def plan_need(price: Price) -> Need:
    """:func:`memory_need` of a priced plan."""
    return memory_need(price.styles, price.sizes, price.keep_size, price.held_bytes, len(price.forwards))


def largest_square_side(styles: list[LoadedStyle], allowance: int, limit: int) -> int:
    """The largest ``max_side`` a square upload (no JPEG shortcut) can be given within ``allowance``."""
    square = imaging.Sizes((limit, limit), (limit, limit), limit * limit)
    return min(memory_need(styles, square, keep_size=False).largest_side(allowance), limit)


def time_limit_side(
    seconds_per_element: float, timeout_s: float, processed: tuple[int, int], multiple: int
) -> int | None:
    """The largest ``max_side`` whose forward on a ``processed`` input alone fits the deadline, or None when it does."""
    width, height = processed
    if seconds_per_element <= 0 or seconds_per_element * 3 * width * height <= timeout_s:
        return None
    area = timeout_s / (seconds_per_element * 3)
    aspect = min(width, height) / max(width, height)
    return int(math.sqrt(area / aspect)) // multiple * multiple


@dataclass(frozen=True)
class PictureBytes:
    """What one request's pictures hold in each phase; the phases never overlap, so the largest counts.

    The runner lets the decoded upload go once it has cut every forward's input
    from it, and lays the answer out once the last forward is done.
    """

    decoding: int
    beside_forward: int  # added to the forward's own bytes, which include its output batch
    answering: int


def picture_bytes(
    decoded_pixels: int, processed_pixels: int, output_pixels: int, held_bytes: int = 0, pieces: int = 1
) -> PictureBytes:
    """Bytes of the pictures while decoding, beside a forward, and while the answer is made.

    Decoding: the decoded upload (up to 4 bytes a pixel, with its RGB copy) and
    the inputs cut from it (3 bytes a pixel each). Beside a forward: the upload's
    alpha, the inputs, the float32 input batch (12 bytes a pixel) and, after the
    first of several pieces, the previous output batch and the output pictures
    made so far. Answering: the last input and output batches, every output
    picture, then the layout, its resize to the original size and the encoded
    answer (10 bytes an output pixel). Held bytes count in all three.
    """
    held, inputs = held_bytes, 3 * pieces * processed_pixels
    earlier = (12 + 3 * (pieces - 1)) * processed_pixels if pieces > 1 else 0
    return PictureBytes(
        decoding=7 * decoded_pixels + inputs + held,
        beside_forward=decoded_pixels + inputs + 12 * processed_pixels + earlier + held,
        answering=decoded_pixels + 2 * inputs + 24 * processed_pixels + 10 * output_pixels + held,  # outputs as inputs
    )
