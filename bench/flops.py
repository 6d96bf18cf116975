"""FLOPs per picture of an ONNX generator, counted from its graph: what the fp32 matmul peak is set against.

    python bench/flops.py ../shared/models/animeganv3_hayao.onnx --side 512

Counts what ``torch.utils.flop_counter`` counts for the PyTorch models: two
FLOPs per multiply-add of every convolution (``Conv``, ``ConvTranspose``) and
matrix product (``MatMul``, ``Gemm``); element-wise work is not counted. Every
convolution's sizes are read off one run of a ``side`` x ``side`` picture.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper


def onnx_flops(path: Path, side: int) -> int:
    """Multiply-add FLOPs of one ``side`` x ``side`` picture through the model at ``path``."""
    model = onnx.load(str(path))
    shapes = _run_shapes(model, side)
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):  # each output (input, transposed) takes prod(kernel[1:]) MACs
            grid = shapes[node.output[0]] if node.op_type == "Conv" else shapes[node.input[0]]
            total += 2 * math.prod(grid) * math.prod(shapes[node.input[1]][1:])
        elif node.op_type in ("MatMul", "Gemm"):
            total += 2 * math.prod(shapes[node.output[0]]) * shapes[node.input[0]][-1]
    return total


def _run_shapes(model: onnx.ModelProto, side: int) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor the count needs, read off one real run (shape inference stops at Resize)."""
    counted = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    wanted = {name for node in counted for name in (*node.input[:2], node.output[0])} - set(shapes)
    for name in sorted(wanted):
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    nhwc = graph_input.shape[-1] == 3
    feed = np.zeros((1, side, side, 3) if nhwc else (1, 3, side, side), dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {graph_input.name: feed})
    shapes.update((name, tuple(value.shape)) for name, value in zip(names, values, strict=True))
    return shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    for path in args.models:
        print(f"{path.name}: {onnx_flops(path, args.side) / 1e9:.2f} GFLOP at {args.side}x{args.side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
