"""Backward rules on what transformer exports contain, against finite differences (float64):
strided and run-time-bounded Slice (Swin's patch merging, torchvision's x[..., 0::2, 1::2, :]),
LayerNormalization over the last axis of token tensors, MatMul with batch broadcasting in
attention, Softmax over the key axis, and the Erf of exact GELU."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from gradcheck import check

R = np.random.default_rng(16)


def rnd(*shape):
    return R.normal(size=shape)


def n(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op}_{outputs[0]}", **attrs)


def ints(*v):
    return np.array(v, np.int64)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    (ints(0, 1), ints(9, 7), ints(1, 2), ints(2, 2)),            # x[:, 0::2, 1::2]: patch merging
    (ints(-1), ints(-100), ints(2), ints(-1)),                   # reversed
    (ints(1, 0), ints(100, 5), ints(-2, -1), ints(3, 2)),        # negative axes, clamped end
])
def test_strided_slice(starts, ends, axes, steps):
    check([n("Slice", ["x", "st", "en", "ax", "sp"])], {"x": rnd(2, 8, 7, 3)}, ["x"],
          consts={"st": starts, "en": ends, "ax": axes, "sp": steps})


def test_slice_with_bounds_computed_at_run_time():
    """Bounds read off the input's shape in the graph (what the TorchScript exporter writes for
    x[:, :h // 2] when h is not folded): no constants for the rule to read."""
    nodes = [n("Shape", ["x"], ["s"]), n("Gather", ["s", "one"], ["h"], axis=0),
             n("Div", ["h", "two"], ["half"]), n("Slice", ["x", "zero", "half", "one"])]
    check(nodes, {"x": rnd(2, 6, 5)}, ["x"],
          consts={"one": ints(1), "two": ints(2), "zero": ints(0)})


def test_layer_norm_over_tokens():
    check([n("LayerNormalization", ["x", "w", "b"], axis=-1, epsilon=1e-6)], {"x": rnd(2, 5, 8)}, ["x"],
          consts={"w": rnd(8), "b": rnd(8)})


@pytest.mark.parametrize("a,b,wrt", [
    ((2, 3, 5, 4), (2, 3, 4, 5), ["a", "b"]),   # q @ k^T per head
    ((2, 3, 5, 5), (2, 3, 5, 4), ["a", "b"]),   # attention @ v
    ((2, 5, 8), (8, 6), ["a"]),                 # token @ weight (constant, broadcast over the batch)
    ((2, 1, 5, 4), (3, 4, 2), ["a", "b"]),      # broadcast over the batch and the head axis both ways
])
def test_matmul_broadcasting(a, b, wrt):
    inputs = {"a": rnd(*a), "b": rnd(*b)}
    consts = {}
    if "b" not in wrt:
        consts["b"] = inputs.pop("b")
    check([n("MatMul", ["a", "b"])], inputs, wrt, consts=consts)


def test_attention_softmax_and_gelu():
    nodes = [n("Softmax", ["x"], ["p"], axis=-1), n("Mul", ["p", "half"], ["q"]),
             n("Erf", ["q"], ["e"]), n("Mul", ["e", "p"])]
    check(nodes, {"x": rnd(2, 3, 5, 5)}, ["x"], consts={"half": np.array(0.7071)})


def test_gelu_opset20_tanh():
    """Opset 20's Gelu op (exporters at opset >= 20 write it instead of the Erf chain)."""
    check([n("Gelu", ["x"], approximate="tanh")], {"x": rnd(3, 7) * 2}, ["x"], opset=20)


def test_gelu_opset20_exact():
    """The reference evaluator computes exact Gelu in float32 (onnx 1.23), too coarse for finite
    differences: the rule's graph, run by onnxruntime, is checked against float64 central
    differences of x Φ(x) instead (float32 rounding of the rule's few ops: 1e-6)."""
    import math
    import onnxruntime as ort
    from gradcheck import build, with_backward
    x = np.linspace(-6, 6, 97)
    model = build([n("Gelu", ["x"])], {"x": x.astype(np.float32)}, {}, "y", np.float32, opset=20)
    sess = ort.InferenceSession(with_backward(model, "y", ["x"]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.astype(np.float32), "seed": np.ones_like(x, np.float32)})[0]
    erf = np.vectorize(math.erf)

    def f(v):
        return v * 0.5 * (1 + erf(v / math.sqrt(2)))
    h = 1e-6
    np.testing.assert_allclose(got, (f(x + h) - f(x - h)) / (2 * h), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attrs,mask", [
    ({}, None),
    ({"scale": 0.25}, None),     # exact in float32, as is its square root (the reference scales Q and K by it)
    ({"is_causal": 1}, None),
    ({}, "additive"),
])
def test_fused_attention_opset23(attrs, mask):
    """Opset 23's Attention op, which the dynamo exporter writes for scaled_dot_product_attention."""
    inputs = {"q": rnd(2, 3, 5, 4), "k": rnd(2, 3, 6, 4), "v": rnd(2, 3, 6, 4)}
    names = ["q", "k", "v"]
    consts = {}
    if mask == "additive":
        consts["m"] = rnd(5, 6)
        names.append("m")
    if attrs.get("is_causal"):
        inputs["k"], inputs["v"] = rnd(2, 3, 5, 4), rnd(2, 3, 5, 4)
    check([n("Attention", names, **attrs)], inputs, ["q", "k", "v"], consts=consts, opset=23)
