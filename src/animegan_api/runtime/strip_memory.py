"""The strip forward's memory, worked out from its layer shapes before a picture is decoded.

What a strip forward holds at its peak is fixed by the picture's size: the
stored output of one convolution, the input of the next and one window. So
it is computed from the shapes, strip by strip where a resize builds the
windows; against ``bench/memory.py`` it came out on the safe side at every
size tried, 256x144 to 2048x1152, 1.12-1.16x the process's peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from animegan_api.runtime.model import InvertedResBlock
from animegan_api.runtime.tiling import ConvStep, StripForward, block_steps, layer_step

__all__ = ["StripCost", "peak_bytes"]


@dataclass(frozen=True)
class StripCost:
    """The strip forward's memory from its shapes, with room for the allocator's slack.

    With the service's mmap threshold (:func:`memory.fix_mmap_threshold`),
    ``bench/memory.py`` measured 62/177/262/298/396/702/1217 MiB at 256 to 2048 px
    on the long side, against 41/164/255/298/395/713/1217 MiB worked out: the
    shapes are exact where a picture takes several strips, and up to 35 MiB
    under where it takes one (freed blocks below the threshold kept by the
    heap; up to 105 MiB with a 16 MiB threshold), which ``extra`` covers.
    """

    forward: StripForward
    slack: float = 0.10
    extra: int = 64 * 1024 * 1024

    def forward_bytes(self, width: int, height: int) -> int:
        return int(peak_bytes(self.forward, width, height) * (1 + self.slack)) + self.extra


def peak_bytes(forward: StripForward, width: int, height: int) -> int:
    """The most this forward holds at once for one picture: stored activations and one strip's workspace.

    Walks the generator's layer plan as :meth:`StripForward.__call__` does, with
    shapes only, so a request's memory is known before it decodes (allocator
    slack not included).
    """
    sizes: dict[str, tuple[int, int]] = {"input": (height, width)}
    shape, peak = (3, height, width), 0
    for layer in forward.plan:
        resize_to = sizes[layer.resize] if layer.resize else None
        module = layer.module
        steps = block_steps(module) if isinstance(module, InvertedResBlock) else (layer_step(module),)
        for step in steps:
            elements, shape = _layer_elements(forward.strip_pixels, shape, step, resize_to)
            peak, resize_to = max(peak, elements), None
        if layer.save_size:
            sizes["saved"] = shape[1:]
    return 4 * peak


def _layer_elements(
    strip_pixels: int, shape: tuple[int, int, int], step: ConvStep, resize_to: tuple[int, int] | None
) -> tuple[int, tuple[int, int, int]]:
    """Elements alive while one convolution runs, and its output's shape.

    Without a resize: its source, its whole output and one window. A resize
    builds each window from a resized copy of the source rows, so a strip
    holds the outputs before it, its window and the larger of that copy and
    its own output; every strip is counted, as the first one (no outputs yet,
    the tallest window) and the last (all outputs) can each be the largest.
    """
    channels, src_h, src_w = shape
    in_h, in_w = resize_to or (src_h, src_w)
    left, right, _, _ = step.pad
    out_h, out_w = step.output_size(in_h, in_w)
    rows = min(out_h, step.strip_rows(strip_pixels, out_w))
    out_shape = (step.conv.out_channels, out_h, out_w)
    row_elements = (in_w + left + right) * channels
    if resize_to is None:
        window = step.window_rows(rows) * row_elements
        return channels * src_h * src_w + out_h * out_w * out_shape[0] + window, out_shape
    alive = 0
    for start in range(0, out_h, rows):
        done, strip_rows = start * out_w * out_shape[0], min(rows, out_h - start)
        window = step.window_rows(strip_rows) * row_elements
        alive = max(alive, done + window + max(window, strip_rows * out_w * out_shape[0]))
    return channels * src_h * src_w + alive, out_shape
