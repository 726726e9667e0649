"""Finite-difference checks (float64, relative error <= 1e-6) of rules the timm CNN zoo needed
(tests/zoo/sweep.py): AveragePool in 1-D/3-D and with dynamic channels, ..."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from gradcheck import check

R = np.random.default_rng(7)


def rnd(*shape):
    return R.normal(size=shape)


def n(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op}_{outputs[0]}", **attrs)


@pytest.mark.parametrize("attrs,shape", [
    (dict(kernel_shape=[3], strides=[2], pads=[1, 1], count_include_pad=0), (2, 3, 9)),
    (dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[0, 1, 1, 0, 1, 0], ceil_mode=1), (1, 2, 5, 4, 5)),
])
def test_average_pool_1d_3d(attrs, shape):
    check([n("AveragePool", ["x"], **attrs)], {"x": rnd(*shape)}, ["x"])


def dynamic_channels():
    """x (2, 6, h, w) -> (2, C?, h, w) through a Reshape whose target shape inference cannot read
    (the channel count goes through Cast/Ceil, as in ResNeSt's split attention export)."""
    f = onnx.TensorProto.FLOAT
    return [
        n("Shape", ["x"], ["s"]),
        n("Slice", ["s", "i1", "i2"], ["c"]),
        n("Cast", ["c"], ["cf"], to=f),
        n("Ceil", ["cf"], ["cc"]),
        n("Cast", ["cc"], ["ci"], to=onnx.TensorProto.INT64),
        n("Concat", ["b0", "ci", "hw"], ["target"], axis=0),
        n("Reshape", ["x", "target"], ["xr"]),
    ]


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=0)])
def test_average_pool_dynamic_channels(attrs):
    consts = {"i1": np.array([1], np.int64), "i2": np.array([2], np.int64), "b0": np.array([0], np.int64),
              "hw": np.array([7, 7], np.int64)}
    nodes = dynamic_channels() + [n("AveragePool", ["xr"], **attrs)]
    check(nodes, {"x": rnd(2, 6, 7, 7)}, ["x"], consts=consts)
