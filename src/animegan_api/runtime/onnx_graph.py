"""ONNX graphs as the service runs them: the layout transposes a TensorFlow export leaves around
per-channel normalisations folded away, the arithmetic untouched.

Why: tf2onnx writes each of AnimeGANv3's normalisations as ``x - mean``
(NCHW), a Transpose to NHWC, a Div and a Mul by per-channel statistics
reshaped to (N, 1, 1, C), and a Transpose back to NCHW. The two transposes
move the whole feature map and compute nothing: Shinkai carries 13 such
pairs (26 of its 34 Transposes, about a fifth of its forward in OpenVINO's
per-node profile), Cute one. Neither ONNX Runtime's transpose optimiser (any
level) nor OpenVINO's removes them, because the statistics arrive through a
Reshape rather than a Transpose. Dividing and multiplying in NCHW by the
(N, C, 1, 1) statistics before that Reshape is the same arithmetic element by
element: ONNX Runtime's output is bit-identical, OpenVINO's within 2e-5, and
OpenVINO runs Shinkai at 512x512 in 0.47 s instead of 0.72 (ONNX Runtime
0.61-0.64 either way). A graph without the pattern is served as it is.

Then each normalisation ``(x - mean) / sqrt(variance + eps)`` written out op
by op (two GlobalAveragePools, Sub, Mul, Add, Sqrt and a Div, or a
Reciprocal and a Mul) becomes one InstanceNormalization of ``x`` with unit
scale and zero bias, the same formula. OpenVINO fuses the Div form into its
MVN kernel by itself but not AnimeGANv3 Hayao's Reciprocal form: there its
13 normalisations ran op by op, each a few passes over the feature map
(about 270 of 1085 ms in the per-node profile, 180 as MVN).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GRAPH_REVISION", "GraphError", "fold_instance_norms", "fold_layout_transposes", "read_graph"]

log = logging.getLogger(__name__)

GRAPH_REVISION = "layout-transposes-folded/1+instance-norms/1"  # memory profiles measured on another graph do not count
_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div"})


class GraphError(ValueError):
    """The bytes are not an ONNX model."""


def read_graph(path: Path) -> bytes:
    """The model at ``path`` as the service runs it (see the module's docstring), serialised."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends for bytes that are not a model
        raise GraphError(f"{type(exc).__name__}: {str(exc)[:160]}") from exc
    folded, norms = fold_layout_transposes(model), fold_instance_norms(model)
    if folded or norms:
        log.info("%s: %d layout transpose pairs folded away, %d InstanceNormalizations", path.name, folded, norms)
    return bytes(model.SerializeToString())


def fold_layout_transposes(model: onnx.ModelProto) -> int:
    """Remove each Transpose(NHWC) -> Div/Mul/Add/Sub by per-channel statistics -> Transpose(NCHW) chain
    in place, the arithmetic moved to NCHW; the number of pairs removed."""
    graph = _Graph(model.graph, _inferred_shapes(model))
    pairs = 0
    for node in list(model.graph.node):
        if _perm(node) == _TO_NHWC and graph.fold(node):
            pairs += 1
    if pairs:
        graph.drop_unused()
    return pairs


def fold_instance_norms(model: onnx.ModelProto) -> int:
    """Replace each ``(x - mean) / sqrt(variance + eps)`` over the pictures' channels, written out op by op,
    by an InstanceNormalization of ``x`` in place; the number replaced."""
    graph = _Graph(model.graph, _inferred_shapes(model))
    replaced = 0
    for node in list(model.graph.node):
        found = graph.normalised(node)
        if found is not None:
            graph.to_instance_norm(node, *found)
            replaced += 1
    if replaced:
        graph.drop_unused()
    return replaced


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Each tensor's shape as ONNX's shape inference sees it (None for a dimension it cannot tell); nothing
    when it cannot run on this graph, and then nothing is folded."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # onnx raises its own inference errors for graphs it cannot follow
        return {}
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {
        info.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in info.type.tensor_type.shape.dim]
        for info in infos
        if info.type.tensor_type.HasField("shape")
    }


def _perm(node: onnx.NodeProto) -> list[int] | None:
    if node.op_type != "Transpose":
        return None
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


class _Graph:
    """A graph's producers, consumers, constants and inferred shapes, for the two rewrites above."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, list[int | None]]) -> None:
        self.graph, self.shapes = graph, shapes
        self.constants = {i.name: i for i in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self._index()

    def _index(self) -> None:
        """Who makes and who reads each tensor: again after every fold, which rewires some."""
        self.producers = {out: node for node in self.graph.node for out in node.output}
        self.consumers: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def fold(self, first: onnx.NodeProto) -> bool:
        """Fold the chain that starts at the NHWC transpose ``first``, if it is one; whether it was."""
        chain: list[onnx.NodeProto] = []
        swaps: list[tuple[int, str]] = []
        tensor = first.output[0]
        while True:
            users = self.consumers[tensor]
            if len(users) != 1 or tensor in self.outputs:
                return False
            node = users[0]
            if _perm(node) == _TO_NCHW and chain:
                return self._rewire(first, chain, swaps, node)
            other = self._other_operand(node, tensor)
            if other is None:
                return False
            chain.append(node)
            swaps.append(other)
            tensor = node.output[0]

    def _other_operand(self, node: onnx.NodeProto, tensor: str) -> tuple[int, str] | None:
        """For an elementwise ``node`` fed ``tensor``: (its other input's index, the NCHW tensor to use there)."""
        if node.op_type not in _ELEMENTWISE or len(node.input) != 2 or list(node.input).count(tensor) != 1:
            return None
        index = 1 - list(node.input).index(tensor)
        name = node.input[index]
        if self._scalar(name):
            return index, name
        reshape = self.producers.get(name)
        if reshape is None or reshape.op_type != "Reshape" or not self._transposed_statistics(reshape):
            return None
        return index, reshape.input[0]

    def _rewire(
        self, first: onnx.NodeProto, chain: list[onnx.NodeProto], swaps: list[tuple[int, str]], last: onnx.NodeProto
    ) -> bool:
        if last.output[0] in self.outputs:
            return False
        chain[0].input[list(chain[0].input).index(first.output[0])] = first.input[0]
        for node, (index, name) in zip(chain, swaps, strict=True):
            node.input[index] = name
        for user in self.consumers[last.output[0]]:
            for position, name in enumerate(user.input):
                if name == last.output[0]:
                    user.input[position] = chain[-1].output[0]
        self.graph.node.remove(first)
        self.graph.node.remove(last)
        self._index()
        return True

    def normalised(self, node: onnx.NodeProto) -> tuple[str, onnx.TensorProto] | None:
        """(x, the eps constant) when ``node`` ends ``(x - mean) / sqrt(variance + eps)``, mean and variance
        GlobalAveragePools of the 4-D ``x`` (so per picture and channel) and eps a scalar constant."""
        quotient = self._quotient(node)
        sqrt = quotient and self._made_by(quotient[1], "Sqrt")
        add = sqrt and self._made_by(sqrt.input[0], "Add")
        if quotient is None or add is None or len(add.input) != 2:
            return None
        x = self._centred(quotient[0])
        eps, variance = sorted(add.input, key=lambda name: not self._scalar(name))
        pool = self._made_by(variance, "GlobalAveragePool")
        square = pool and self._made_by(pool.input[0], "Mul")
        shape = self.shapes.get(x or "")
        if x is None or not self._scalar(eps) or self._scalar(variance) or square is None or shape is None:
            return None
        if square.input[0] != square.input[1] or self._centred(square.input[0]) != x:
            return None
        return (x, self.constants[eps]) if len(shape) == 4 and shape[1] is not None else None

    def to_instance_norm(self, node: onnx.NodeProto, x: str, eps: onnx.TensorProto) -> None:
        """Make ``node``'s output an InstanceNormalization of ``x`` (unit scale, zero bias, eps's type)."""
        epsilon = numpy_helper.to_array(eps).reshape(-1)
        channels = self.shapes[x][1]
        assert channels is not None  # normalised() checked it
        scale, bias = f"{node.output[0]}/unit_scale", f"{node.output[0]}/zero_bias"
        self.graph.initializer.extend(
            [
                numpy_helper.from_array(np.ones(channels, dtype=epsilon.dtype), scale),
                numpy_helper.from_array(np.zeros(channels, dtype=epsilon.dtype), bias),
            ]
        )
        norm = helper.make_node(
            "InstanceNormalization", [x, scale, bias], [node.output[0]], name=node.name, epsilon=float(epsilon[0])
        )
        position = list(self.graph.node).index(node)
        self.graph.node.remove(node)
        self.graph.node.insert(position, norm)
        self._index()

    def _quotient(self, node: onnx.NodeProto) -> tuple[str, str] | None:
        """(dividend, divisor) of a Div, or of a Mul by a Reciprocal (tf2onnx writes either)."""
        if node.op_type == "Div" and len(node.input) == 2:
            return node.input[0], node.input[1]
        if node.op_type != "Mul" or len(node.input) != 2:
            return None
        for index in (0, 1):
            reciprocal = self._made_by(node.input[1 - index], "Reciprocal")
            if reciprocal is not None:
                return node.input[index], reciprocal.input[0]
        return None

    def _centred(self, name: str) -> str | None:
        """x when ``name`` is ``x - mean``, the mean a GlobalAveragePool of x, maybe through a Reshape that
        keeps its (N, C, 1, 1) shape."""
        sub = self._made_by(name, "Sub")
        if sub is None or len(sub.input) != 2:
            return None
        x, mean = sub.input
        pool = self._made_by(mean, "GlobalAveragePool")
        reshape = self._made_by(mean, "Reshape")
        if pool is None and reshape is not None:
            pool = self._made_by(reshape.input[0], "GlobalAveragePool")
            kept = self.shapes.get(mean)
            if pool is None or kept != self.shapes.get(pool.output[0]) or not kept or None in kept[1:]:
                return None
        return x if pool is not None and pool.input[0] == x else None

    def _made_by(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producers.get(name)
        return node if node is not None and node.op_type == op_type else None

    def _scalar(self, name: str) -> bool:
        constant = self.constants.get(name)
        return constant is not None and int(np.prod(constant.dims)) == 1

    def _transposed_statistics(self, reshape: onnx.NodeProto) -> bool:
        """A Reshape of (N, C, 1, 1) into (N, 1, 1, C), by its constant target and the inferred source shape:
        the same numbers a Transpose to NHWC would give."""
        constant, source = self.constants.get(reshape.input[1]), self.shapes.get(reshape.input[0])
        if constant is None or source is None or len(source) != 4:
            return False
        target = numpy_helper.to_array(constant).tolist()
        return len(target) == 4 and target[1:3] == [1, 1] and source[2:] == [1, 1] and source[1] == target[3]

    def drop_unused(self) -> None:
        """Remove nodes and constants nothing reads any more (the reshapes the fold bypassed)."""
        while True:
            read = self._read() | self.outputs
            dead = [node for node in self.graph.node if not any(out in read for out in node.output)]
            if not dead:
                break
            for node in dead:
                self.graph.node.remove(node)
        read = self._read()
        unused = [c for c in self.graph.initializer if c.name not in read]
        for constant in unused:
            self.graph.initializer.remove(constant)

    def _read(self) -> set[str]:
        return {name for node in self.graph.node for name in node.input}
