"""The strip forward's memory, worked out from its layer shapes before a picture is decoded.

What a strip forward holds at its peak is fixed by the picture's size: the
stored output of one convolution, the input of the next and one window. So
it is computed from the shapes; against ``bench/memory.py`` it came out on
the safe side at every size tried, 512x288 to 4096x2304.
"""

from __future__ import annotations

from dataclasses import dataclass

from animegan_api.runtime.model import InvertedResBlock
from animegan_api.runtime.tiling import ConvStep, StripForward


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

    Walks the same convolutions as :meth:`StripForward.__call__` with shapes only, so a
    request's memory is known before it decodes (allocator slack not included).
    """
    g, peak = forward.generator, 0
    shape = (3, height, width)
    layers: list[tuple[ConvStep, tuple[int, int] | None]] = [(ConvStep.of(layer), None) for layer in g.block_a]
    half = ((height + 1) // 2, (width + 1) // 2)
    layers += [(ConvStep.of(layer), None) for layer in g.block_b]
    for layer in g.block_c:
        if isinstance(layer, InvertedResBlock):
            expand, depthwise, project, norm = layer.layers
            layers += [
                (ConvStep.of(expand), None),
                (ConvStep.of(depthwise), None),
                (ConvStep.plain(project, norm), None),
            ]
        else:
            layers.append((ConvStep.of(layer), None))
    layers += [(ConvStep.of(layer), half if i == 0 else None) for i, layer in enumerate(g.block_d)]
    layers += [(ConvStep.of(layer), (height, width) if i == 0 else None) for i, layer in enumerate(g.block_e)]
    layers.append((ConvStep.plain(g.out_layer[0]), None))
    for step, resize_to in layers:
        elements, shape = _layer_elements(forward.strip_pixels, shape, step, resize_to)
        peak = max(peak, elements)
    return 4 * peak


def _layer_elements(
    strip_pixels: int, shape: tuple[int, int, int], step: ConvStep, resize_to: tuple[int, int] | None
) -> tuple[int, tuple[int, int, int]]:
    """Elements alive while one convolution runs (source, output so far, window), and its output's shape."""
    channels, src_h, src_w = shape
    in_h, in_w = resize_to or (src_h, src_w)
    conv = step.conv
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    left, right, top, bottom = step.pad
    out_h, out_w = (in_h + top + bottom - kh) // sh + 1, (in_w + left + right - kw) // sw + 1
    rows = min(out_h, max(8, strip_pixels // out_w))
    window = ((rows - 1) * sh + kh) * (in_w + left + right) * channels
    upsampling = 2 * window if resize_to else 0  # the source rows and their resize, before the copy in
    alive = channels * src_h * src_w + conv.out_channels * out_h * out_w + window + upsampling
    return alive, (conv.out_channels, out_h, out_w)
