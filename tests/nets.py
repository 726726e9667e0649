"""Small ONNX classifiers built with onnx.helper, for tests that need exact control of the graph.

Real exported models are tested too (see conftest.py); these make edge cases cheap: duplicate and
dead channels, Flatten heads, a hard-coded batch of 1, a final Softmax.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def small_cnn(head: str = "gap", final: str | None = None, static_batch: bool = False,
              size: int = 32, classes: int = 10, seed: int = 0, duplicate: bool = False,
              dead: bool = False, opset: int = 17) -> onnx.ModelProto:
    """conv3x3(3->8)+ReLU, MaxPool2, conv3x3(8->16)+ReLU = 'feat', then a GAP or Flatten FC head.

    duplicate: channel 1 of 'feat' is 2x channel 0 (same Score-CAM mask). dead: channel 2 is
    always 0 (constant). final: None, "Softmax" or "Sigmoid" after the logits.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 16).astype(np.float32)
    if duplicate:
        w2[1], b2[1] = 2 * w2[0], 2 * b2[0]
    if dead:
        w2[2], b2[2] = 0.0, -1.0
    h = size // 2
    feat_dim = 16 if head == "gap" else 16 * h * h
    wf = rng.normal(0, 0.2, (classes, feat_dim)).astype(np.float32)
    bf = rng.normal(0, 0.1, classes).astype(np.float32)
    batch = 1 if static_batch else "N"
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (wf, "wf"), (bf, "bf")]]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "w2", "b2"], ["conv2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv2"], ["feat"], name="relu2"),
    ]
    pre = "feat"
    if head == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", ["feat"], ["gap"], name="gap"))
        pre = "gap"
    if static_batch:
        inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
        nodes.append(helper.make_node("Reshape", [pre, "flat_shape"], ["flat"], name="flatten"))
    else:
        nodes.append(helper.make_node("Flatten", [pre], ["flat"], name="flatten", axis=1))
    out = "logits"
    nodes.append(helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1))
    if final:
        attrs = {"axis": 1} if final == "Softmax" else {}
        nodes.append(helper.make_node(final, ["logits"], ["probs"], name="final", **attrs))
        out = "probs"
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def head_params(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return inits["wf"], inits["bf"]


def nhwc_wrapper(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network taking [N, H, W, C] images through a leading Transpose (as tf2onnx does)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    x = g.input[0]
    n, c, h, w = (d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim)
    for node in g.node:
        node.input[:] = ["x_nchw" if i == "x" else i for i in node.input]
    g.node.insert(0, helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, h, w, c]))
    return m
