"""Count, per image, the gate units between a layer and the score that sit within float32
rounding of their threshold: where two runtimes (or two builds of one) may take opposite
branches, so the gradient at the layer can differ between them.

A gate is an op whose derivative jumps at a threshold: ReLU, LeakyRelu and PRelu at 0, Clip at
its bounds (ReLU6), HardSigmoid where alpha*x + beta hits 0 and 1, HardSwish at -3 and 3. A unit x
is "near" when |x - t| <= tol for one of its thresholds t, with

    tol = ULPS * eps(dtype) * max|x| over the image's whole tensor.

Why this scale: a pre-activation is a long sum (a convolution, a folded BatchNorm, a residual Add)
whose terms are of the order of the tensor's largest values; runtimes sum in different orders and
with different kernels (FMA, Winograd, blocked GEMM), so their results differ by a few ulps *of
those terms*, not of the (possibly tiny) result. A value within that band of the threshold can
fall on either side. ULPS = 64 covers, with margin, the largest difference measured between
PyTorch and onnxruntime pre-activations on torchvision ResNet-18/50 (13 eps * max|x|, both
exporters), and every ReLU that flipped between the two there lay inside the band
(tests/benchmarks/kink_cost.py prints both); it cannot be exact: the true error depends on each sum's length and order, which the
ONNX graph does not fix. A unit exactly at its threshold (e.g. a ReLU input that is exactly 0) is
counted too: one ulp decides its branch.

Not counted: gates on tensors that are not batch-first (see `gates`), MaxPool ties and element-wise Max/Min between two live inputs (their decisions need
the pooling windows or both operands; rarely near-tied in float data), Abs at 0, and the smooth
activations (no kink).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .builder import GraphBuilder
from .constants import constant_protos

ULPS = 64
GATES = ("Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish")
_NP = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
       onnx.TensorProto.DOUBLE: np.float64}


def output_name(layer: str) -> str:
    """Graph output carrying the per-image count [N] (float32) for one explained layer."""
    return f"onnxcam/near_kinks:{layer}"


def gates(path: list[onnx.NodeProto], shapes: dict[str, tuple], batch) -> list[onnx.NodeProto]:
    """The gate nodes among a backward path's nodes whose input is batch-first (rank >= 2, first
    axis `batch`, the explained layer's): a count per image needs the image axis. Others (a
    reshaped tensor that merges the batch with another axis, or an unknown shape) are skipped."""
    def batch_first(name):
        shape = shapes.get(name, ())
        return len(shape) >= 2 and shape[0] == batch and batch != "?"
    return [n for n in path if n.op_type in GATES and batch_first(n.input[0])]


def _attr(node, name, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _thresholds(node: onnx.NodeProto, consts: dict) -> list:
    """Threshold values (floats) or tensor names (Clip's run-time bounds) of one gate."""
    if node.op_type in ("Relu", "LeakyRelu", "PRelu"):
        return [0.0]
    if node.op_type == "HardSwish":
        return [-3.0, 3.0]
    if node.op_type == "HardSigmoid":
        alpha, beta = _attr(node, "alpha", 0.2), _attr(node, "beta", 0.5)
        return [-beta / alpha, (1.0 - beta) / alpha] if alpha else []
    bounds = [b for b in node.input[1:3] if b]  # Clip (opset >= 11: bounds are inputs)
    return [float(numpy_helper.to_array(consts[b])) if b in consts and not consts[b].dims else b
            for b in bounds]


def append_near_kinks(model: onnx.ModelProto, per_layer: dict[str, list[onnx.NodeProto]],
                      types: dict[str, int]) -> dict[str, str]:
    """Append the counts for each layer's gates to `model`; returns {layer: output name}.

    Layers without a gate on their path get no output (their count is 0). A gate shared by
    several layers is counted once and reused.
    """
    b = GraphBuilder(model)
    consts = constant_protos(model)
    counted: dict[str, str | None] = {}
    out = {}
    for layer, nodes in per_layer.items():
        parts = []
        for node in nodes:
            if node.name not in counted or not node.name:
                counted[node.name] = _near(b, node, types, _thresholds(node, consts))
            if counted[node.name] is not None:
                parts.append(counted[node.name])
        if parts:
            out[layer] = b.op("Sum", parts, outputs=[output_name(layer)])
    b.append_to(model.graph)
    return out


def _near(b: GraphBuilder, node: onnx.NodeProto, types: dict[str, int], thresholds: list) -> str | None:
    """[N] float32: units of the gate's input within tol of a threshold, per image."""
    if not thresholds:
        return None
    x = node.input[0]
    dtype = _NP.get(types.get(x, onnx.TensorProto.FLOAT), np.float32)
    flat = b.op("Reshape", [x, b.const(np.array([0, -1], np.int64), "batch_flat")], hint="gate_input")
    magnitude = b.op("Abs", [flat])
    scale = b.reduce("ReduceMax", magnitude, [1], keepdims=1, hint="gate_scale")
    tol = b.op("Mul", [scale, b.const(np.asarray(ULPS * np.finfo(dtype).eps, dtype), "ulps")], hint="gate_tol")
    near = None
    for t in thresholds:  # |x - 0| is the magnitude already: one pass fewer for ReLU-like gates
        if isinstance(t, float):
            t = None if t == 0.0 else b.const(np.asarray(t, dtype), "threshold")
        distance = magnitude if t is None else b.op("Abs", [b.op("Sub", [flat, t])])
        hit = b.op("LessOrEqual", [distance, tol], hint="near")
        near = hit if near is None else b.op("Or", [near, hit])
    counts = b.op("Cast", [near], to=onnx.TensorProto.FLOAT)
    return b.reduce("ReduceSum", counts, [1], keepdims=0, hint="near_kinks")
