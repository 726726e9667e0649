"""What a backward rule may ask about the forward graph, and helpers to emit its nodes.

Rules see static shapes from shape inference (the batch is the symbol N), constant values of
initializers and Constant nodes, and element types; they emit standard ONNX nodes through the
builder. Cotangents carry the element type of their primal tensor (FP16 graphs stay FP16).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import OnnxCamError
from ..intake.catalog import tensor_shapes
from .builder import GraphBuilder

_NP = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
       onnx.TensorProto.DOUBLE: np.float64}


class RuleContext:
    def __init__(self, model: onnx.ModelProto, layer: str = ""):
        self.model = model
        self.b = GraphBuilder(model)
        self.shapes = tensor_shapes(model)
        vis = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in vis}
        self.types.update({t.name: t.data_type for t in model.graph.initializer})
        self.consts = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.consts[node.output[0]] = node.attribute[0].t
                self.types[node.output[0]] = node.attribute[0].t.data_type
        self.layer = layer
        self._shape_nodes: dict[str, str] = {}
        self._producers = {o: n for n in model.graph.node for o in n.output}
        # position of each forward node (composites map layers by depth; Mul finds its signal)
        self.order = {o: k for k, n in enumerate(model.graph.node) for o in n.output}
        self._folded: dict[str, np.ndarray | None] = {}

    # ----- facts about the forward graph
    def const(self, name: str) -> np.ndarray | None:
        t = self.consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def folded(self, name: str, depth: int = 0) -> np.ndarray | None:
        """A tensor's value when it is computed from constants only (weights behind
        DequantizeLinear in QDQ graphs, or behind a Cast in FP16 graphs), run once at build time;
        None when it depends on the input."""
        value = self.const(name)
        if value is not None or not name:
            return value
        if name not in self._folded:
            node = self._producers.get(name)
            result = None
            if node is not None and depth < 8 and len(node.output) == 1 and not any(
                    a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                inputs = [self.folded(i, depth + 1) if i else None for i in node.input]
                if all(v is not None for v, i in zip(inputs, node.input) if i):
                    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                    result = self.evaluate(node.op_type, inputs, **attrs)
            self._folded[name] = result
        return self._folded[name]

    def shape(self, name: str) -> tuple:
        return self.shapes.get(name, ())

    def static_shape(self, name: str, node=None) -> tuple[int, ...]:
        """Shape with every dim known except a symbolic batch (returned as -1)."""
        dims = self.shape(name)
        if not dims:
            self.fail(node, f"no inferred shape for tensor {name!r}")
        return tuple(d if isinstance(d, int) and d > 0 else -1 for d in dims)

    def dtype(self, name: str):
        return _NP.get(self.types.get(name, onnx.TensorProto.FLOAT), np.float32)

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def evaluate(self, op_type: str, inputs: list, **attrs) -> np.ndarray:
        """Run one op on constants with onnxruntime at build time (e.g. to read off the exact
        Jacobian of a linear op such as Resize or AveragePool on a basis, in its own semantics)."""
        from .._runtime import import_onnxruntime

        ort = import_onnxruntime()
        names = [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)]
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, inputs) if a is not None]
        node = helper.make_node(op_type, names, ["y"], **attrs)
        out = helper.make_empty_tensor_value_info("y")  # its type is inferred (Cast changes it)
        graph = helper.make_graph([node], "probe", vis, [out])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.b.opset)])
        model.ir_version = self.model.ir_version  # what this onnxruntime already accepted
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {n: a for n, a in zip(names, inputs) if a is not None})[0]

    def fail(self, node, why: str):
        where = f"{node.op_type} node {node.name!r}" if node is not None else "the graph"
        raise OnnxCamError(f"cannot backpropagate through {where} toward layer {self.layer!r}: {why}")

    # ----- emitting nodes
    _BOOL_OPS = {"Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not"}

    def op(self, op_type, inputs, hint=None, **attrs) -> str:
        """Emit one node; its output's element type is recorded so later scalars match it."""
        out = self.b.op(op_type, inputs, hint, **attrs)
        if op_type == "Cast":
            self.types[out] = attrs["to"]
        elif op_type == "Shape":
            self.types[out] = onnx.TensorProto.INT64
        elif op_type in self._BOOL_OPS:
            self.types[out] = onnx.TensorProto.BOOL
        else:
            values = inputs[1:] if op_type == "Where" else inputs  # Where's condition is bool
            typed = [self.types[i] for i in values if i in self.types]
            if typed:
                self.types[out] = typed[0]
        return out

    def scalar(self, value: float, like: str) -> str:
        return self.b.const(np.asarray(value, dtype=self.dtype(like)), "scalar")

    def ints(self, values) -> str:
        return self.b.const(np.asarray(values, dtype=np.int64), "ints")

    def tensor(self, value: np.ndarray, like: str, hint="const") -> str:
        """A new constant with `like`'s element type; rules can read it back like any initializer."""
        arr = np.asarray(value, dtype=self.dtype(like))
        name = self.b.const(arr, hint)
        self.consts[name] = self.b.initializers[-1]
        self.shapes[name] = tuple(arr.shape)
        self.types[name] = self.types.get(like, onnx.TensorProto.FLOAT)
        return name

    def float32(self, value: np.ndarray, hint="const") -> str:
        """A new float32 constant (gradients of integer tensors are float32)."""
        return self.tensor(np.ascontiguousarray(value, np.float32), "", hint)

    def shape_of(self, name: str) -> str:
        if name not in self._shape_nodes:
            self._shape_nodes[name] = self.op("Shape", [name], hint="shape")
        return self._shape_nodes[name]

    def zeros_like(self, name: str) -> str:
        return self.op("Mul", [name, self.scalar(0.0, name)], hint="zeros")

    def reshape_like(self, g: str, like: str) -> str:
        return self.op("Reshape", [g, self.shape_of(like)], hint="reshape_like")

    def unbroadcast(self, g: str, out_name: str, in_name: str, node=None) -> str:
        """Sum a cotangent of the broadcast output down to the input's shape (ReduceSum + Reshape)."""
        out_dims, in_dims = self.shape(out_name), self.shape(in_name)
        if tuple(out_dims) == tuple(in_dims):
            return g
        if not out_dims or (not in_dims and in_name not in self.consts):
            self.fail(node, "unknown shapes, cannot un-broadcast")
        in_dims = in_dims if in_dims else tuple(self.const(in_name).shape)
        lead = len(out_dims) - len(in_dims)
        axes = list(range(lead))
        for i, d in enumerate(in_dims):
            if d == 1 and out_dims[lead + i] != 1:
                axes.append(lead + i)
        if axes:
            g = self.b.reduce("ReduceSum", g, axes, keepdims=1, hint="unbroadcast")
        return self.reshape_like(g, in_name)
