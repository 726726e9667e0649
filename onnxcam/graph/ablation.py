"""AblationCAM's batch, built inside the ONNX graph.

Inputs: one image [1, ...], KEEP [M, C] (1 keeps a channel of the layer, 0 ablates it) and FILL
[1] (the value an ablated channel takes). The graph repeats the image M times, runs the model, and
where the layer's tensor A is made replaces it by A ⊙ KEEP + FILL ⊙ (1 − KEEP) for every node that
reads it, so the rest of the network sees ablation m in batch row m; it returns the scores [M, K].
The part before the layer runs on all M rows too: pytorch-grad-cam's AblationCAM runs the whole
model per batch the same way, and it keeps the graph free of batch-size assumptions that cutting
it at the layer would have to rewrite (Shape→Reshape chains, skip connections around the layer).
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper

from .builder import GraphBuilder
from .expose import elem_types, end_at_scores

IMAGE = "onnxcam/image"
KEEP = "onnxcam/keep"
FILL = "onnxcam/fill"


def ablation_graph(proto: onnx.ModelProto, input_name: str, layer: str, layout: str,
                   score_name: str) -> onnx.ModelProto:
    model = copy.deepcopy(proto)
    g = model.graph
    original = next(i for i in g.input if i.name == input_name)
    in_type = original.type.tensor_type.elem_type
    rank = len(original.type.tensor_type.shape.dim)
    layer_type = elem_types(model).get(layer, onnx.TensorProto.FLOAT)

    head = GraphBuilder(model)
    rows = head.op("Slice", [head.op("Shape", [KEEP]), head.const(np.array([0], np.int64)),
                             head.const(np.array([1], np.int64))], hint="rows")
    reps = head.op("Concat", [rows, head.const(np.ones(rank - 1, np.int64), "ones")], hint="reps", axis=0)
    head.op("Expand", [IMAGE, reps], outputs=[input_name])
    head.prepend_to(g)

    splice = GraphBuilder(model)
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    keep = splice.op("Unsqueeze", [KEEP, splice.const(np.asarray(axes, np.int64), "axes")], hint="keep")
    fill = FILL
    if layer_type != onnx.TensorProto.FLOAT:
        keep = splice.op("Cast", [keep], hint="keep_cast", to=layer_type)
        fill = splice.op("Cast", [FILL], hint="fill_cast", to=layer_type)
    one = splice.const(np.asarray(1, helper.tensor_dtype_to_np_dtype(layer_type)), "one")
    ablated = splice.op("Add", [splice.op("Mul", [layer, keep], hint="kept"),
                                splice.op("Mul", [fill, splice.op("Sub", [one, keep])], hint="filled")],
                        hint="ablated")
    nodes = list(g.node)
    del g.node[:]
    for node in nodes:
        if node.op_type != "Constant" and layer in node.input:
            node.input[:] = [ablated if i == layer else i for i in node.input]
        g.node.append(node)
        if layer in node.output:
            g.node.extend(splice.nodes)
    g.initializer.extend(splice.initializers)

    end_at_scores(model, score_name, input_name, [
        helper.make_tensor_value_info(IMAGE, in_type, None),
        helper.make_tensor_value_info(KEEP, onnx.TensorProto.FLOAT, ["M", None]),
        helper.make_tensor_value_info(FILL, onnx.TensorProto.FLOAT, [1])])
    return model
