"""The strip forward's memory, worked out from its layer shapes before a picture is decoded.

What a strip forward holds at its peak is fixed by the picture's size: the
stored output of one convolution, the input of the next and one window. So
it is computed from the shapes; against ``bench/memory.py`` it came out on
the safe side at every size tried, 512x288 to 4096x2304.
"""

from __future__ import annotations

from dataclasses import dataclass

from animegan_api.runtime.model import InvertedResBlock
from animegan_api.runtime.tiling import ConvStep, StripForward, block_steps, layer_step

__all__ = ["StripCost", "peak_bytes"]


@dataclass(frozen=True)
class StripCost:
    """The strip forward's memory from its shapes, with room for the allocator's slack.

    Against ``bench/memory.py``: 272/604/1254/5173 MiB worked out for 512x288,
    1024x576, 2048x1152 and 4096x2304 (before slack), 213/468/1251/4674 MiB measured.
    """

    forward: StripForward
    slack: float = 0.10
    extra: int = 32 * 1024 * 1024

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
    """Elements alive while one convolution runs (source, output so far, window), and its output's shape."""
    channels, src_h, src_w = shape
    in_h, in_w = resize_to or (src_h, src_w)
    left, right, _, _ = step.pad
    out_h, out_w = step.output_size(in_h, in_w)
    rows = min(out_h, step.strip_rows(strip_pixels, out_w))
    window = step.window_rows(rows) * (in_w + left + right) * channels
    upsampling = 2 * window if resize_to else 0  # the source rows and their resize, before the copy in
    alive = channels * src_h * src_w + step.conv.out_channels * out_h * out_w + window + upsampling
    return alive, (step.conv.out_channels, out_h, out_w)
