"""Every backward rule against finite differences (float64, relative error <= 1e-6)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxcam import OnnxCamError
from gradcheck import check

R = np.random.default_rng(42)


def rnd(*shape, scale=1.0, positive=False):
    a = R.normal(size=shape) * scale
    return np.abs(a) + 0.5 if positive else a


def n(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op}_node", **attrs)


CONV_CASES = [
    dict(x=(2, 3, 7, 7), w=(4, 3, 3, 3), attrs=dict(pads=[1, 1, 1, 1])),
    dict(x=(1, 4, 8, 8), w=(6, 4, 3, 3), attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    dict(x=(1, 4, 9, 7), w=(6, 4, 3, 2), attrs=dict(strides=[2, 3], pads=[0, 1, 2, 0])),
    dict(x=(1, 4, 9, 9), w=(4, 2, 3, 3), attrs=dict(group=2, dilations=[2, 2], pads=[2, 2, 2, 2])),
    dict(x=(2, 6, 8, 8), w=(6, 1, 3, 3), attrs=dict(group=6, strides=[2, 2], pads=[1, 1, 1, 1])),
    dict(x=(1, 3, 8, 8), w=(5, 3, 3, 3), attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    dict(x=(1, 3, 5, 5), w=(2, 3, 1, 1), attrs=dict()),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: str(c["attrs"]))
def test_conv(case):
    check([n("Conv", ["x", "w", "b"], **case["attrs"])], {"x": rnd(*case["x"])}, ["x"],
          consts={"w": rnd(*case["w"]), "b": rnd(case["w"][0])})


@pytest.mark.parametrize("attrs,w", [(dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), (4, 3, 3, 3)),
                                     (dict(strides=[2, 2], group=2), (4, 2, 2, 2))])
def test_conv_transpose(attrs, w):
    check([n("ConvTranspose", ["x", "w"], **attrs)], {"x": rnd(1, 4, 5, 5)}, ["x"], consts={"w": rnd(*w)})


@pytest.mark.parametrize("ta,tb,alpha,beta", [(0, 0, 1.0, 1.0), (0, 1, 0.5, 2.0), (1, 0, 1.5, 1.0), (1, 1, 1.0, 0.3)])
def test_gemm(ta, tb, alpha, beta):
    a = rnd(4, 3) if ta else rnd(3, 4)
    b = rnd(5, 4) if tb else rnd(4, 5)
    check([n("Gemm", ["a", "b", "c"], transA=ta, transB=tb, alpha=alpha, beta=beta)],
          {"a": a, "b": b, "c": rnd(1, 5)}, ["a", "b", "c"])


@pytest.mark.parametrize("sa,sb", [((2, 3, 4, 5), (5, 6)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul_broadcast(sa, sb):
    check([n("MatMul", ["a", "b"])], {"a": rnd(*sa), "b": rnd(*sb)}, ["a", "b"])


def test_matmul_constant_weight():
    check([n("MatMul", ["a", "w"])], {"a": rnd(2, 6, 4)}, ["a"], consts={"w": rnd(4, 3)})


def test_batch_norm():
    c = 4
    check([n("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], {"x": rnd(2, c, 3, 3)}, ["x"],
          consts={"s": rnd(c), "b": rnd(c), "m": rnd(c), "v": rnd(c, positive=True)})


UNARY = [("Relu", {}, {}), ("LeakyRelu", {"alpha": 0.2}, {}), ("Sigmoid", {}, {}),
         ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {"scale": 3}),
         ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, {"scale": 4}), ("HardSwish", {}, {"scale": 4}),
         ("Tanh", {}, {}), ("Erf", {}, {}), ("Softplus", {}, {}), ("Exp", {}, {}),
         ("Log", {}, {"positive": True}), ("Sqrt", {}, {"positive": True}),
         ("Reciprocal", {}, {"positive": True}), ("Neg", {}, {}), ("Abs", {}, {}),
         ("Identity", {}, {}), ("Dropout", {}, {})]


@pytest.mark.parametrize("op,attrs,data", UNARY, ids=lambda v: v if isinstance(v, str) else None)
def test_unary(op, attrs, data):
    check([n(op, ["x"], **attrs)], {"x": rnd(2, 3, 4, 5, **data)}, ["x"])


def test_clip_both_bounds_and_min_only():
    check([n("Clip", ["x", "lo", "hi"])], {"x": rnd(2, 3, 5, 5, scale=4)}, ["x"],
          consts={"lo": np.array(0.0), "hi": np.array(6.0)})
    check([n("Clip", ["x", "lo"])], {"x": rnd(2, 3, 5, 5)}, ["x"], consts={"lo": np.array(-0.5)})


def test_prelu_both_inputs():
    check([n("PRelu", ["x", "a"])], {"x": rnd(2, 3, 4, 4), "a": rnd(3, 1, 1)}, ["x", "a"])


def test_pow_constant_exponent():
    check([n("Pow", ["x", "p"])], {"x": rnd(2, 3, 4, positive=True)}, ["x"], consts={"p": np.array(3.0)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("sa,sb", [((2, 3, 4, 4), (2, 3, 4, 4)), ((2, 3, 4, 4), (1, 3, 1, 1)), ((3, 1, 4), (2, 1, 5, 1))])
def test_binary_broadcast(op, sa, sb):
    b = rnd(*sb, positive=True) if op == "Div" else rnd(*sb)
    check([n(op, ["a", "b"])], {"a": rnd(*sa), "b": b}, ["a", "b"])


def test_sum_and_where():
    check([n("Sum", ["a", "b", "c"])], {"a": rnd(2, 3, 4), "b": rnd(3, 1), "c": rnd(2, 3, 4)}, ["a", "b", "c"])
    check([n("Where", ["m", "a", "b"])], {"a": rnd(2, 3, 4), "b": rnd(3, 4)}, ["a", "b"],
          consts={"m": R.normal(size=(2, 3, 4)) > 0})


@pytest.mark.parametrize("attrs,size", [
    (dict(kernel_shape=[2, 2], strides=[2, 2]), 8),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 9),
    (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), 8),
    (dict(kernel_shape=[3, 2], strides=[1, 1]), 6),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), 10)])
def test_maxpool(attrs, size):
    check([n("MaxPool", ["x"], **attrs)], {"x": rnd(2, 3, size, size)}, ["x"])


@pytest.mark.parametrize("attrs,size", [
    (dict(kernel_shape=[2, 2], strides=[2, 2]), 8),
    (dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0), 7),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), 7),
    (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), 8),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=0), 8)])
def test_average_pool(attrs, size):
    check([n("AveragePool", ["x"], **attrs)], {"x": rnd(2, 3, size, size)}, ["x"])


def test_global_average_pool_and_reduces():
    check([n("GlobalAveragePool", ["x"])], {"x": rnd(2, 3, 5, 4)}, ["x"])
    check([n("ReduceMean", ["x"], axes=[2, 3], keepdims=0)], {"x": rnd(2, 3, 5, 4)}, ["x"])
    check([n("ReduceSum", ["x", "ax"], keepdims=1)], {"x": rnd(2, 3, 5, 4)}, ["x"],
          consts={"ax": np.array([1, 3], np.int64)})


def test_reduce_mean_opset18_axes_input():
    check([n("ReduceMean", ["x", "ax"], keepdims=1)], {"x": rnd(2, 3, 5, 4)}, ["x"],
          consts={"ax": np.array([-1, -2], np.int64)}, opset=18)


def test_structural_ops():
    check([n("Concat", ["a", "b"], axis=1)], {"a": rnd(2, 3, 4), "b": rnd(2, 5, 4)}, ["a", "b"])
    check([n("Split", ["x", "s"], outputs=["y", "z"], axis=1)], {"x": rnd(2, 5, 3)}, ["x"],
          consts={"s": np.array([2, 3], np.int64)})
    check([n("Slice", ["x", "st", "en", "ax"])], {"x": rnd(2, 6, 7)}, ["x"],
          consts={"st": np.array([1, -5], np.int64), "en": np.array([5, 100], np.int64),
                  "ax": np.array([1, 2], np.int64)})
    check([n("Pad", ["x", "p"])], {"x": rnd(2, 3, 4, 4)}, ["x"],
          consts={"p": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)})
    check([n("Reshape", ["x", "s"])], {"x": rnd(2, 3, 4)}, ["x"], consts={"s": np.array([2, -1], np.int64)})
    check([n("Flatten", ["x"], axis=1)], {"x": rnd(2, 3, 4)}, ["x"])
    check([n("Transpose", ["x"], perm=[0, 2, 3, 1])], {"x": rnd(2, 3, 4, 5)}, ["x"])
    check([n("Squeeze", ["x", "ax"])], {"x": rnd(2, 1, 4)}, ["x"], consts={"ax": np.array([1], np.int64)})
    check([n("Unsqueeze", ["x", "ax"])], {"x": rnd(2, 4)}, ["x"], consts={"ax": np.array([1], np.int64)})
    check([n("Expand", ["x", "s"])], {"x": rnd(3, 1)}, ["x"], consts={"s": np.array([2, 3, 4], np.int64)})


@pytest.mark.parametrize("attrs,sizes", [
    (dict(mode="linear", coordinate_transformation_mode="half_pixel"), (1, 2, 10, 14)),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), (1, 2, 9, 9)),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), (1, 2, 3, 2)),
    (dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), (1, 2, 10, 12)),
    (dict(mode="linear", coordinate_transformation_mode="asymmetric"), (1, 2, 12, 6))])
def test_resize_sizes(attrs, sizes):
    check([n("Resize", ["x", "", "", "sz"], **attrs)], {"x": rnd(1, 2, 5, 6)}, ["x"],
          consts={"sz": np.array(sizes, np.int64)})


def test_resize_scales():
    check([n("Resize", ["x", "", "sc"], mode="linear")], {"x": rnd(2, 3, 4, 5)}, ["x"],
          consts={"sc": np.array([1, 1, 2, 2], np.float32)})


def test_softmax_family_and_layernorm():
    check([n("Softmax", ["x"], axis=1)], {"x": rnd(2, 5, 3)}, ["x"])
    check([n("LogSoftmax", ["x"], axis=-1)], {"x": rnd(2, 5)}, ["x"])
    check([n("LayerNormalization", ["x", "g", "b"], axis=-1, epsilon=1e-5)], {"x": rnd(2, 3, 6)}, ["x"],
          consts={"g": rnd(6), "b": rnd(6)})
    check([n("LayerNormalization", ["x", "g", "b"], axis=1)], {"x": rnd(2, 3, 2, 2)}, ["x"],
          consts={"g": rnd(3, 2, 2), "b": rnd(3, 2, 2)})


def test_quantize_dequantize_is_straight_through():
    """A QDQ pair has zero derivative almost everywhere; the rule passes the gradient through."""
    import onnxruntime as ort
    from gradcheck import build, with_backward
    x = rnd(2, 3, 4, 4)
    consts = {"s": np.array(0.05, np.float32), "z": np.array(0, np.int8), "w": rnd(4, 3, 3, 3)}
    qdq = [n("Conv", ["x", "w"], outputs=["c"], pads=[1, 1, 1, 1]),
           n("QuantizeLinear", ["c", "s", "z"], outputs=["q"]), n("DequantizeLinear", ["q", "s", "z"], outputs=["d"]),
           n("Relu", ["d"])]
    plain = [n("Conv", ["x", "w"], outputs=["c"], pads=[1, 1, 1, 1]), n("Relu", ["c"])]
    seed = rnd(2, 4, 4, 4)
    grads = []
    for nodes in (qdq, plain):
        m = build(nodes, {"x": x.astype(np.float32)}, consts, "y", np.float32)
        back = with_backward(m, "y", ["x"])
        sess = ort.InferenceSession(back.SerializeToString(), providers=["CPUExecutionProvider"])
        grads.append(sess.run(None, {"x": x.astype(np.float32), "seed": seed.astype(np.float32)})[0])
    assert np.abs(grads[0]).sum() > 0
    # no activation changes sign under this quantization, so straight-through = the float gradient
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-5)


def test_op_without_rule_names_op_node_and_layer():
    with pytest.raises(OnnxCamError, match=r"no gradient rule for op Atan \(node 'Atan_node'\).*layer 'x'"):
        check([n("Atan", ["x"])], {"x": rnd(2, 3)}, ["x"])


@pytest.mark.parametrize("indices,axis", [(np.array([0, 2, 2, -1], np.int64), 1),
                                          (np.array([[1, 0], [3, 3]], np.int64), 2),
                                          (np.array(1, np.int64), 0)])
def test_gather_constant_indices(indices, axis):
    check([n("Gather", ["x", "i"], axis=axis)], {"x": rnd(3, 4, 5)}, ["x"], consts={"i": indices})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_max_min(op, keepdims):
    check([n(op, ["x"], axes=[1], keepdims=keepdims)], {"x": rnd(2, 5, 3)}, ["x"])


def test_reduce_max_splits_ties_evenly_as_pytorch():
    """x has a tie for the maximum: each tied element gets half the cotangent (torch.amax)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto
    from onnxcam.graph.backward import append_backward
    graph = helper.make_graph([n("ReduceMax", ["x"], axes=[1], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    grad = append_backward(model, "y", "s", ["x"])["x"]
    model.graph.output.append(helper.make_tensor_value_info(grad, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run([grad], {"x": np.array([[2.0, 5.0, 5.0]], np.float32), "s": np.ones(1, np.float32)})[0]
    np.testing.assert_allclose(out, [[0.0, 0.5, 0.5]])
