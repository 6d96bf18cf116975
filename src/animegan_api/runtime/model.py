"""The AnimeGANv2 generator.

The module layout mirrors the widely used PyTorch port so its published state
dicts (``block_a.0.1.weight`` ... ``out_layer.0.weight``) load with
``strict=True``. Only the architecture lives here; finding and loading
checkpoints is ``weights.py``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "UPSAMPLE_MODES",
    "ConvNormLReLU",
    "Generator",
    "InvertedResBlock",
    "PlannedLayer",
    "Upsample",
    "layer_plan",
    "tf_legacy_resize",
]

Upsample = Literal["align_corners", "tf_legacy"]
UPSAMPLE_MODES: tuple[str, ...] = ("align_corners", "tf_legacy")


class ConvNormLReLU(nn.Sequential):
    """Pad, conv, layer norm (GroupNorm with one group), leaky ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: expand, depthwise, project, residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, expansion_ratio: int = 2) -> None:
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        bottleneck = round(in_ch * expansion_ratio)
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0),
            ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True),
            nn.Conv2d(bottleneck, out_ch, kernel_size=1, padding=0, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return x + out if self.use_res_connect else out


def _tf_legacy_axis(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """Resize one axis the way TF1's resize_bilinear does (no half-pixel offset)."""
    in_size = x.shape[dim]
    if in_size == out_size:
        return x
    src = torch.arange(out_size, dtype=torch.float32, device=x.device) * (in_size / out_size)
    lo = src.floor().long().clamp_(max=in_size - 1)
    hi = (lo + 1).clamp_(max=in_size - 1)
    frac = (src - lo.to(src.dtype)).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = out_size
    frac = frac.view(shape)
    return x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac


def _tf_legacy_double(x: torch.Tensor) -> torch.Tensor:
    """Exact 2x case of :func:`tf_legacy_resize`, about ten times faster on CPU.

    Replicate-padding one pixel right and bottom, then an align-corners resize
    to 2n+1 samples input coordinate i/2 at output i; cropping drops the pad.
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
    out = F.interpolate(padded, (2 * h + 1, 2 * w + 1), mode="bilinear", align_corners=True)
    return out[..., : 2 * h, : 2 * w]


def tf_legacy_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an NCHW tensor where output pixel i samples input i*in/out.

    Checkpoints converted from the TensorFlow AnimeGAN were trained with this
    convention; PyTorch's ``align_corners`` modes both shift and soften them.
    """
    h, w = x.shape[-2:]
    if size == (2 * h, 2 * w):
        return _tf_legacy_double(x)
    return _tf_legacy_axis(_tf_legacy_axis(x, 2, size[0]), 3, size[1])


class Generator(nn.Module):
    """AnimeGANv2 generator: NCHW RGB in [-1, 1] to NCHW RGB in [-1, 1]."""

    def __init__(self, upsample: Upsample = "align_corners") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.upsample = upsample
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=(0, 1, 0, 1)),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=(0, 1, 0, 1)),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256, 2),
            InvertedResBlock(256, 256, 2),
            InvertedResBlock(256, 256, 2),
            InvertedResBlock(256, 256, 2),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(ConvNormLReLU(128, 128), ConvNormLReLU(128, 128))
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, kernel_size=1, bias=False), nn.Tanh())

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.upsample == "tf_legacy":
            return tf_legacy_resize(x, size)
        return F.interpolate(x, size, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = {"input": (x.shape[-2], x.shape[-1])}  # no int(): an ONNX export must keep these symbolic
        out = x
        for layer in layer_plan(self):
            if layer.resize is not None:
                out = self._resize(out, sizes[layer.resize])
            out = layer.module(out)
            if layer.save_size:
                sizes["saved"] = (out.shape[-2], out.shape[-1])
        return torch.tanh(out)


@dataclass(frozen=True)
class PlannedLayer:
    """One layer in the order the generator runs it, and what happens to the sizes around it.

    ``resize`` resamples the layer's input first: to the size saved earlier,
    or back to the input picture's. ``save_size`` keeps this layer's output size.
    """

    module: nn.Module
    resize: Literal["saved", "input"] | None = None
    save_size: bool = False


def layer_plan(g: Generator) -> list[PlannedLayer]:
    """Every layer of the generator in the order it runs: the one statement of AnimeGANv2's order.

    The whole-picture forward, the strip forward (:mod:`~animegan_api.runtime.tiling`)
    and its memory count (:mod:`~animegan_api.runtime.strip_memory`) all walk it.
    The out layer's tanh is left to the walker: it is the last step of each.
    """
    plan = [PlannedLayer(layer, save_size=i == len(g.block_a) - 1) for i, layer in enumerate(g.block_a)]
    plan += [PlannedLayer(layer) for layer in (*g.block_b, *g.block_c)]
    plan += [PlannedLayer(layer, "saved" if i == 0 else None) for i, layer in enumerate(g.block_d)]
    plan += [PlannedLayer(layer, "input" if i == 0 else None) for i, layer in enumerate(g.block_e)]
    plan.append(PlannedLayer(g.out_layer[0]))
    return plan
