"""The LRP rules' Conv VJP emitted as a Conv (graph/rules/conv_vjp.py) equals the ConvTranspose it
replaces, for every geometry it accepts (groups, depthwise, dilation, uneven pads, auto_pad, 1-D), and hands
strided convs back to the ConvTranspose."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from gradcheck import build
from onnxcam.graph.context import RuleContext
from onnxcam.graph.rules.conv_vjp import conv_vjp, transposed_kernel
from onnxcam.graph.rules.linear import conv

R = np.random.default_rng(7)

CASES = {  # name: (x shape, w shape, conv attributes)
    "3x3 pad 1": ((2, 4, 9, 9), (6, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
    "1x1": ((2, 8, 5, 5), (3, 8, 1, 1), {}),
    "groups 2, uneven pads": ((1, 4, 8, 7), (6, 2, 3, 3), dict(group=2, pads=[0, 1, 2, 1])),
    "depthwise 5x5 dilation 2": ((1, 3, 11, 11), (3, 1, 5, 5), dict(group=3, pads=[4, 4, 4, 4], dilations=[2, 2])),
    "depthwise multiplier 2": ((1, 3, 6, 6), (6, 1, 3, 3), dict(group=3, pads=[1, 1, 1, 1])),
    "1-D": ((2, 3, 10), (4, 3, 3), dict(pads=[2, 0])),
    "SAME_UPPER, even kernel": ((1, 2, 6, 6), (3, 2, 2, 4), dict(auto_pad="SAME_UPPER")),
    "stride 2 (ConvTranspose kept)": ((1, 3, 9, 9), (4, 3, 3, 3), dict(pads=[1, 1, 1, 1], strides=[2, 2])),
}


def _vjp_graph(make_vjp, x, w, attrs, cotangent):
    model = build([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"x": x}, {"w": w}, "y", np.float32)
    ctx = RuleContext(model)
    out = make_vjp(ctx, model.graph.node[0], cotangent, "w")   # y itself as the cotangent
    ctx.b.append_to(model.graph)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(out, 1, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0], [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("case", CASES)
def test_conv_vjp_as_conv_equals_conv_transpose(case):
    xs, ws, attrs = CASES[case]
    x, w = R.normal(size=xs).astype(np.float32), R.normal(size=ws).astype(np.float32)
    want, ops_t = _vjp_graph(lambda c, n, s, w: conv(c, n, [s], [True, False], weight=w)[0], x, w, attrs, "y")
    got, ops = _vjp_graph(conv_vjp, x, w, attrs, "y")
    assert "ConvTranspose" in ops_t
    assert ("ConvTranspose" in ops) == ("strides" in attrs)
    assert got.shape == xs
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_transposed_kernel_swaps_channels_per_group_and_flips():
    w = np.arange(6 * 2 * 2 * 3, dtype=np.float32).reshape(6, 2, 2, 3)   # 2 groups: 4 in, 6 out
    wt = transposed_kernel(w, 2)
    assert wt.shape == (4, 3, 2, 3)
    for g in range(2):
        for ci in range(2):
            for co in range(3):
                np.testing.assert_array_equal(wt[g * 2 + ci, co], w[g * 3 + co, ci][::-1, ::-1])
