"""The graph's constant tensors (initializers and Constant nodes' `value`), in one place: rules,
the near-kink counter, intake's BN fold record and FullGrad all read weights and biases this way."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def constant_protos(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """{name: TensorProto} of every initializer and every Constant node with a `value` tensor."""
    values = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return values


class ConstantValues(dict):
    """constant_protos as numpy arrays, converted only when read (most initializers are never
    asked for); `get` gives the default for a tensor numpy cannot read (external data not loaded,
    odd types)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__(constant_protos(model))

    def get(self, key, default=None) -> np.ndarray | None:
        t = super().get(key)
        if t is None:
            return default
        try:
            return numpy_helper.to_array(t)
        except Exception:  # external data not loaded, odd types: not a constant we can read
            return default
