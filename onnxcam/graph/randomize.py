"""Cascading model-parameter randomization (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS
2018), done on the ONNX graph: the weights of the last k layers with parameters (Conv, ConvTranspose,
Gemm, MatMul; output side first) are replaced by seeded Gaussian noise of the same mean and standard
deviation, biases included. Works on any canonical model, whatever exported it."""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper

PARAMETRIC = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def parametric_layers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes with constant parameters, from the output side to the input side."""
    inits = {t.name for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in PARAMETRIC and len(n.input) > 1 and n.input[1] in inits]
    return list(reversed(nodes))


def randomized(model: onnx.ModelProto, k: int, seed: int = 0) -> onnx.ModelProto:
    """A copy whose last `k` parametric layers have random weights (cascading from the top)."""
    out = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in out.graph.initializer}
    for node in parametric_layers(out)[:k]:
        for name in node.input[1:]:
            if name in inits:
                arr = numpy_helper.to_array(inits[name])
                noise = rng.normal(arr.mean(), arr.std() or 1e-3, arr.shape).astype(arr.dtype)
                inits[name].CopyFrom(numpy_helper.from_array(noise, name))
    return out
