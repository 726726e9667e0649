"""Append named standard-ONNX nodes to a graph.

Every node we add gets a unique name with the `onnxcam/` prefix: error messages and layer matching
need names, and ONNX tools treat nameless or duplicate names badly. Reduce ops take `axes` as an
attribute before opset 18 and as an input from 18 on; the builder hides that difference.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..intake.canonical import default_opset


class GraphBuilder:
    """Collects new nodes and constants for one graph, then writes them into it."""

    def __init__(self, model: onnx.ModelProto, prefix: str = "onnxcam"):
        self.model = model
        self.opset = default_opset(model)
        self.prefix = prefix
        self._ids = itertools.count()
        taken = {n.name for n in model.graph.node}
        taken.update(o for n in model.graph.node for o in n.output)
        taken.update(t.name for t in model.graph.initializer)
        taken.update(i.name for i in model.graph.input)
        self._taken = taken
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def fresh(self, hint: str) -> str:
        while True:
            name = f"{self.prefix}/{hint}_{next(self._ids)}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, value, hint: str = "const", dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int | list[str] = 1,
           **attrs) -> str | list[str]:
        """Add one node; returns its output name (or names when outputs > 1 or a list is given)."""
        names = outputs if isinstance(outputs, list) else [self.fresh(hint or op_type.lower())
                                                          for _ in range(outputs)]
        node = helper.make_node(op_type, inputs, names, name=self.fresh(f"{op_type}"), **attrs)
        self.nodes.append(node)
        return names[0] if len(names) == 1 else names

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 1, hint=None) -> str:
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, [x, self.const(np.asarray(axes, np.int64), "axes")], hint,
                           keepdims=keepdims)
        return self.op(op_type, [x], hint, axes=axes, keepdims=keepdims)

    def resize_to(self, x: str, hw, align_corners: bool = False, hint: str = "resized") -> str:
        """Bilinear resize of an [N, C, h, w] tensor to (H, W), batch and channels kept
        (half-pixel grid = F.interpolate(align_corners=False) and cv2.INTER_LINEAR)."""
        head = self.op("Slice", [self.op("Shape", [x]), self.const(np.array([0], np.int64)),
                                 self.const(np.array([2], np.int64))], hint="batch_channels")
        sizes = self.op("Concat", [head, self.const(np.asarray(hw, np.int64), "hw")], hint="sizes", axis=0)
        mode = "align_corners" if align_corners else "half_pixel"
        return self.op("Resize", [x, "", "", sizes], hint=hint, mode="linear",
                       coordinate_transformation_mode=mode)

    def minmax(self, x: str, eps: float = 0.0, hint: str = "minmax") -> str:
        """Per-map (x - min) / (max - min + eps) over the last two axes of [N, C, h, w]."""
        lo = self.reduce("ReduceMin", x, [2, 3], hint="min")
        hi = self.reduce("ReduceMax", x, [2, 3], hint="max")
        span = self.op("Sub", [hi, lo], hint="span")
        if eps:
            span = self.op("Add", [span, self.const(np.float32(eps), "eps")], hint="span_eps")
        return self.op("Div", [self.op("Sub", [x, lo], hint="shifted"), span], hint=hint)

    def prepend_to(self, graph: onnx.GraphProto) -> None:
        """Put the new nodes before the existing ones (they feed the original graph)."""
        old = list(graph.node)
        del graph.node[:]
        graph.node.extend(self.nodes + old)
        graph.initializer.extend(self.initializers)
        self.nodes, self.initializers = [], []

    def append_to(self, graph: onnx.GraphProto) -> None:
        graph.node.extend(self.nodes)
        graph.initializer.extend(self.initializers)
        self.nodes, self.initializers = [], []
