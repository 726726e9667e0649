"""Finite-difference checks of whole explain graphs: the model and our gradient graph are both
converted to float64 and run by ONNX's reference evaluator, so non-PyTorch exports (Paddle,
tf2onnx) are checked to ~1e-9 without any framework."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.utils import Extractor

from onnxcam.graph.backward import SEED, gradient_graph
from gradcheck import H, evaluator

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == F32:
            vi.type.tensor_type.elem_type = F64
    for i, t in enumerate(g.initializer):
        if t.data_type == F32:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for node in g.node:
        for a in node.attribute:
            if a.name == "to" and a.i == F32:
                a.i = F64
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64), a.t.name))
    return m


def check_layer_gradient(ex, x: np.ndarray, layer: str, seed: np.ndarray, directions: int = 3,
                         rtol: float = 1e-6, h: float = H, floor: float = 0.0) -> float:
    """Our dS/dA at `layer` (float64 run of the very graph onnxcam builds) against central
    differences of the sub-model layer -> score. Returns the largest relative error seen.
    `h`: the step; deep ReLU/MaxPool nets need a smaller one at early layers, where a step of
    1e-6 moves some of their ~1e5 gates across a kink. `floor`: the error is relative to at
    least floor * sum|g v| (as gradcheck.check does with 1e-3), for directions whose derivative
    cancels to a small fraction of its terms, where float64 rounding alone exceeds rtol."""
    model = ex.model
    grad_graph, carried = gradient_graph(model.proto, model.score_name, [layer], top1=False)
    run = evaluator(to_float64(grad_graph)).run(None, {model.input_name: x.astype(np.float64),
                                                        SEED: seed.astype(np.float64)})
    outs = dict(zip([o.name for o in grad_graph.graph.output], run))
    a_name, g_name = carried[layer]
    a, g = outs[a_name], outs[g_name]
    # the image stays an input: heads may read its shape (e.g. a Reshape to [N, -1])
    head = to_float64(Extractor(model.proto).extract_model([layer, model.input_name], [model.score_name]))
    sub = evaluator(head)
    needs_x = model.input_name in {i.name for i in head.graph.input}
    feeds = {model.input_name: x.astype(np.float64)} if needs_x else {}
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(directions):
        v = rng.normal(size=a.shape)
        plus = sub.run(None, {**feeds, layer: a + h * v})[0].reshape(len(x), -1)
        minus = sub.run(None, {**feeds, layer: a - h * v})[0].reshape(len(x), -1)
        fd = float(np.sum((plus - minus) / (2 * h) * seed))
        an = float(np.sum(g * v))
        err = abs(fd - an) / max(abs(fd), abs(an), floor * float(np.abs(g * v).sum()), 1e-12)
        worst = max(worst, err)
        assert err <= rtol, f"{layer}: finite difference {fd} vs gradient {an}"
    return worst
