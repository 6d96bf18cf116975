"""Int8 copies of ONNX styles: static quantisation of the convolutions, calibrated on the check pictures.

Only the convolutions are quantised (u8 activations, s8 weights per output
channel, QDQ format): they hold nearly all of the work, while normalisation,
resizing and activations stay fp32 where int8 would cost the picture most.
Whether the copy is served at all is :mod:`precision`'s decision.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from animegan_api.runtime.weights import OnnxSignature, open_onnx, served_graph

__all__ = ["QuantizeError", "int8_session"]


class QuantizeError(Exception):
    """Why no int8 copy of a model could be made; the style then stays fp32."""


def int8_session(path: Path, signature: OnnxSignature, batches: list[np.ndarray], threads: int) -> Any:
    """An ONNX Runtime session of ``path`` with its convolutions quantised, calibrated on ``batches`` (NCHW)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="animegan-int8-") as folder:
        served, prepared, quantized = (Path(folder) / name for name in ("served.onnx", "prepared.onnx", "int8.onnx"))
        served.write_bytes(served_graph(path))  # the graph fp32 runs, so the PSNR guard compares like with like
        try:
            # shapes inferred and the graph folded first, as the quantiser expects (symbolic inference fails on v3)
            quant_pre_process(str(served), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(quantized),
                _Calibration(signature, batches),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:  # the quantiser raises whatever its graph passes raise
            raise QuantizeError(f"int8 quantisation failed ({type(exc).__name__}: {str(exc)[:160]})") from exc
        return open_onnx(quantized, threads)


class _Calibration:
    """Feeds the check pictures to the quantiser's calibration, in the graph's own layout and batch."""

    def __init__(self, signature: OnnxSignature, batches: list[np.ndarray]) -> None:
        nhwc = signature.layout == "NHWC"
        singles = [batch[i : i + 1] for batch in batches for i in range(batch.shape[0])]
        self._feeds = iter(
            {signature.input_name: np.ascontiguousarray(one.transpose(0, 2, 3, 1)) if nhwc else one} for one in singles
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
