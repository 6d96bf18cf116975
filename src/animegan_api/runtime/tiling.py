"""The AnimeGANv2 forward in row strips: the same picture as the whole-picture forward, in bounded memory.

Every ``GroupNorm(1, C)`` needs statistics over the whole picture, so the
network runs one convolution at a time, each computed strip by strip. A strip
reads the rows its kernel needs, reflection-padded only at the true picture
border, with bilinear upsampling computed in global coordinates. Its raw
output is kept as it is, while each strip's count, mean and sum of squared
deviations are merged in float64 with Chan's formula. The norm, its affine
and the LeakyReLU never get a pass of their own: they are applied as the
next convolution reads its window, in the same copy that builds the window.

What stays alive is the raw output of one convolution and the input of the
next, plus one window, instead of every activation the whole-picture forward
holds at once (its upsampled input, each reflection pad's copy, each norm's
copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from animegan_api.runtime.model import ConvNormLReLU, Generator, InvertedResBlock, Upsample, layer_plan
from animegan_api.runtime.moments import GroupMoments

__all__ = ["ConvStep", "StripForward", "block_steps", "layer_step"]

_NEGATIVE_SLOPE = 0.2
_CHANNELS_LAST = torch.channels_last


@dataclass
class _Stored:
    """An activation kept as row strips, and the per-sample affine and LeakyReLU not yet applied to it."""

    strips: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    scale: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    act: bool = False

    @property
    def height(self) -> int:
        start, last = self.strips[-1]
        return start + int(last.shape[2])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, c, _, w = self.strips[0][1].shape
        return int(n), int(c), self.height, int(w)

    def read_into(self, out: torch.Tensor, start: int) -> None:
        """Fill ``out`` with rows ``start:start + out.shape[2]``, everything pending applied."""
        stop = start + int(out.shape[2])
        for first, strip in self.strips:
            low, high = max(start, first), min(stop, first + int(strip.shape[2]))
            if low >= high:
                continue
            part, dst = strip[:, :, low - first : high - first], out[:, :, low - start : high - start]
            if self.scale is None or self.shift is None:
                dst.copy_(part)
            else:
                torch.addcmul(self.shift, part, self.scale, out=dst)
        if self.act:
            F.leaky_relu_(out, _NEGATIVE_SLOPE)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        n, c, _, w = self.shape
        out = torch.empty((n, c, stop - start, w), dtype=self.strips[0][1].dtype, memory_format=_CHANNELS_LAST)
        self.read_into(out, start)
        return out


@dataclass(frozen=True)
class ConvStep:
    """One convolution with its reflection pad (left, right, top, bottom) and the norm after it."""

    conv: nn.Conv2d
    pad: tuple[int, int, int, int]
    norm: nn.GroupNorm | None
    act: bool

    @classmethod
    def of(cls, layer: nn.Module) -> ConvStep:
        assert isinstance(layer, ConvNormLReLU)
        pad_module, conv, norm, _ = layer
        assert isinstance(pad_module, nn.ReflectionPad2d) and isinstance(conv, nn.Conv2d)
        assert isinstance(norm, nn.GroupNorm)
        left, right, top, bottom = pad_module.padding
        return cls(conv, (left, right, top, bottom), norm, act=True)

    @classmethod
    def plain(cls, conv: nn.Module, norm: nn.Module | None = None) -> ConvStep:
        """A 1x1 convolution with no pad, its norm (if any) and no activation."""
        assert isinstance(conv, nn.Conv2d) and (norm is None or isinstance(norm, nn.GroupNorm))
        return cls(conv, (0, 0, 0, 0), norm, act=False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The convolution's output size for an input of ``height`` x ``width`` (before its pad)."""
        (kh, kw), (sh, sw) = self.conv.kernel_size, self.conv.stride
        left, right, top, bottom = self.pad
        return (height + top + bottom - kh) // sh + 1, (width + left + right - kw) // sw + 1

    def strip_rows(self, strip_pixels: int, out_width: int) -> int:
        """Output rows per strip: about ``strip_pixels`` output pixels, never fewer than 8 rows."""
        return max(8, strip_pixels // out_width)

    def window_rows(self, rows: int) -> int:
        """Input rows (pad included) that ``rows`` output rows read."""
        return (rows - 1) * self.conv.stride[0] + self.conv.kernel_size[0]


def block_steps(block: InvertedResBlock) -> tuple[ConvStep, ConvStep, ConvStep]:
    """An inverted residual block's expand, depthwise and project convolutions, each with its norm."""
    expand, depthwise, project, norm = block.layers
    return ConvStep.of(expand), ConvStep.of(depthwise), ConvStep.plain(project, norm)


def layer_step(module: nn.Module) -> ConvStep:
    """A planned layer that is one convolution: a ConvNormLReLU, or the out layer's bare 1x1 convolution."""
    return ConvStep.of(module) if isinstance(module, ConvNormLReLU) else ConvStep.plain(module)


class StripForward:
    """Runs a :class:`~animegan_api.runtime.model.Generator` strip by strip; a drop-in for its ``forward``.

    ``strip_pixels`` is the size of one strip's output: larger strips mean
    fewer halo rows read twice, smaller ones a smaller window.
    """

    def __init__(self, generator: Generator, strip_pixels: int = 1 << 18) -> None:
        self.generator = generator
        self.upsample: Upsample = generator.upsample
        self.strip_pixels = strip_pixels
        self.plan = layer_plan(generator)  # walked by every forward and every request's memory count

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sizes = {"input": (int(x.shape[2]), int(x.shape[3]))}
        out = _Stored([(0, x.contiguous(memory_format=_CHANNELS_LAST))])
        for layer in self.plan:
            resize_to = sizes[layer.resize] if layer.resize else None
            if isinstance(layer.module, InvertedResBlock):
                out = self._block(out, layer.module)
            else:
                out = self._conv(out, layer_step(layer.module), resize_to)
            if layer.save_size:
                sizes["saved"] = out.shape[2:]
        return torch.tanh_(torch.cat([strip for _, strip in out.strips], dim=2))

    def _block(self, x: _Stored, block: InvertedResBlock) -> _Stored:
        expand, depthwise, project = block_steps(block)
        h = self._conv(x, expand)
        h = self._conv(h, depthwise)
        out = self._conv(h, project)
        del h
        if not block.use_res_connect:
            return out
        for start, strip in out.strips:  # settle the norm in place and add the block's input
            if out.scale is not None and out.shift is not None:
                strip.mul_(out.scale).add_(out.shift)
            strip.add_(x.rows(start, start + int(strip.shape[2])))
        return _Stored(out.strips)

    def _conv(self, src: _Stored, step: ConvStep, resize_to: tuple[int, int] | None = None) -> _Stored:
        """One convolution over the whole picture, strip by strip, with the statistics of its norm."""
        conv = step.conv
        left, right, top, _ = step.pad
        n, _, in_h, in_w = src.shape
        if resize_to is not None:
            in_h, in_w = resize_to
        out_h, out_w = step.output_size(in_h, in_w)
        rows = step.strip_rows(self.strip_pixels, out_w)
        out, stats = _Stored(act=step.act), GroupMoments(n)
        for start in range(0, out_h, rows):
            stop = min(start + rows, out_h)
            first = start * conv.stride[0] - top
            last = first + step.window_rows(stop - start)  # input rows [first, last), pad included
            window = self._window(src, (first, last), (in_h, in_w), (left, right), resize_to)
            result = F.conv2d(window, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
            del window
            if step.norm is not None:
                stats.add(result)
            out.strips.append((start, result))
        if step.norm is not None:
            out.scale, out.shift = stats.affine(step.norm)
        return out

    def _window(
        self,
        src: _Stored,
        span: tuple[int, int],
        size: tuple[int, int],
        sides: tuple[int, int],
        resize_to: tuple[int, int] | None,
    ) -> torch.Tensor:
        """Input rows ``span`` of a convolution, reflected at the picture's border, pending ops applied."""
        first, last = span
        in_h, in_w = size
        left, right = sides
        top, bottom = max(0, -first), max(0, last - in_h)
        n, c = src.shape[:2]
        shape = (n, c, last - first, in_w + left + right)
        window = torch.empty(shape, dtype=src.strips[0][1].dtype, memory_format=_CHANNELS_LAST)
        inner = window[:, :, top : last - first - bottom, left : left + in_w]
        if resize_to is None:
            src.read_into(inner, max(first, 0))
        else:
            inner.copy_(self._upsampled(src, max(first, 0), min(last, in_h), resize_to))
        _reflect(window, (left, right, top, bottom))
        return window

    def _upsampled(self, src: _Stored, first: int, last: int, size: tuple[int, int]) -> torch.Tensor:
        """Rows ``first:last`` of the source resized to ``size``, sampled where the whole resize would sample."""
        _, _, src_h, src_w = src.shape
        if self.upsample == "tf_legacy" and size == (2 * src_h, 2 * src_w):
            return _doubled_rows(src, first, last)
        lo, hi, frac = _sampling(torch.arange(first, last), src_h, size[0], self.upsample)
        base = int(lo.min())
        part = src.rows(base, int(hi.max()) + 1).contiguous()  # NCHW: whole rows are gathered as blocks
        rows = _blend(part, 2, lo - base, hi - base, frac)
        del part
        if self.upsample == "align_corners":
            return F.interpolate(rows, (rows.shape[2], size[1]), mode="bilinear", align_corners=True)
        lo, hi, frac = _sampling(torch.arange(size[1]), src_w, size[1], self.upsample)
        return _blend(rows.contiguous(memory_format=_CHANNELS_LAST), 3, lo, hi, frac)


def _doubled_rows(src: _Stored, first: int, last: int) -> torch.Tensor:
    """Rows ``first:last`` of TF1's exact 2x bilinear resize, where output row i samples source row i / 2.

    As :func:`~animegan_api.runtime.model.tf_legacy_resize` does it for the whole
    picture: an align-corners resize to 2n + 1 samples, over the source rows
    this strip needs plus the next real row, or a replicated one at the
    picture's bottom edge (and always at its right edge).
    """
    _, _, src_h, src_w = src.shape
    base, end = first // 2, min((last - 1) // 2 + 2, src_h)
    part = src.rows(base, end)
    part = F.pad(part, (0, 1, 0, 1 if end == src_h else 0), mode="replicate")
    rows = int(part.shape[2])
    doubled = F.interpolate(part, (2 * rows - 1, 2 * src_w + 1), mode="bilinear", align_corners=True)
    return doubled[:, :, first - 2 * base : last - 2 * base, : 2 * src_w]


def _reflect(window: torch.Tensor, pad: tuple[int, int, int, int]) -> None:
    """Fill the border rows and columns of ``window`` by reflecting its interior, as ReflectionPad2d would."""
    left, right, top, bottom = pad
    height, width = int(window.shape[2]), int(window.shape[3])
    for k in range(1, top + 1):
        window[:, :, top - k, left : width - right].copy_(window[:, :, top + k, left : width - right])
    for k in range(1, bottom + 1):
        row = height - bottom - 1
        window[:, :, row + k, left : width - right].copy_(window[:, :, row - k, left : width - right])
    for k in range(1, left + 1):
        window[:, :, :, left - k].copy_(window[:, :, :, left + k])
    for k in range(1, right + 1):
        column = width - right - 1
        window[:, :, :, column + k].copy_(window[:, :, :, column - k])


def _sampling(index: torch.Tensor, in_size: int, out_size: int, mode: Upsample) -> tuple[torch.Tensor, ...]:
    """For output positions ``index``: the two source positions and the weight of the second."""
    if mode == "tf_legacy":
        position = index.double() * (in_size / out_size)
    else:
        position = index.double() * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    lo = position.floor().long().clamp_(max=in_size - 1)
    hi = (lo + 1).clamp_(max=in_size - 1)
    return lo, hi, (position - lo.double()).float()


def _blend(x: torch.Tensor, dim: int, lo: torch.Tensor, hi: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[dim] = -1
    weight = frac.view(shape)
    low = x.index_select(dim, lo)
    return low.add_(x.index_select(dim, hi).sub_(low).mul_(weight))
