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


def dynamic_dim(axis):
    """x (2, 6, 7, 7) -> xr of the same shape whose dim `axis` shape inference cannot read (it goes
    through Cast/Ceil, as the channel count in ResNeSt's split attention export)."""
    f = onnx.TensorProto.FLOAT
    before = "b0" if axis == 1 else "b0c"
    after = "hw" if axis == 1 else "w"
    return [
        n("Shape", ["x"], ["s"]),
        n("Slice", ["s", f"i{axis}", f"i{axis + 1}"], ["c"]),
        n("Cast", ["c"], ["cf"], to=f),
        n("Ceil", ["cf"], ["cc"]),
        n("Cast", ["cc"], ["ci"], to=onnx.TensorProto.INT64),
        n("Concat", [before, "ci", after], ["target"], axis=0),
        n("Reshape", ["x", "target"], ["xr"]),
    ]


DYNAMIC_CONSTS = {"i1": np.array([1], np.int64), "i2": np.array([2], np.int64), "i3": np.array([3], np.int64),
                  "b0": np.array([0], np.int64), "b0c": np.array([0, 6], np.int64),
                  "hw": np.array([7, 7], np.int64), "w": np.array([7], np.int64)}


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=0)])
def test_average_pool_dynamic_channels(attrs):
    nodes = dynamic_dim(1) + [n("AveragePool", ["xr"], **attrs)]
    check(nodes, {"x": rnd(2, 6, 7, 7)}, ["x"], consts=DYNAMIC_CONSTS)


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 0, 1], count_include_pad=0),
                                   dict(kernel_shape=[2, 2], strides=[3, 2])])
def test_average_pool_dynamic_size(attrs):
    nodes = dynamic_dim(2) + [n("AveragePool", ["xr"], **attrs)]
    check(nodes, {"x": rnd(2, 6, 7, 7)}, ["x"], consts=DYNAMIC_CONSTS)


@pytest.mark.parametrize("op,attrs", [("Elu", {"alpha": 0.7}), ("Selu", {}), ("Mish", {}), ("Softsign", {})],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_activation(op, attrs):
    check([n(op, ["x"], **attrs)], {"x": rnd(2, 3, 4, 5)}, ["x"], opset=18)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_broadcast(op):
    check([n(op, ["a", "b", "c"])], {"a": rnd(2, 3, 4, 4), "b": rnd(3, 1, 1), "c": rnd(4)}, ["a", "b", "c"])


def test_max_ties_are_shared():
    """ReLU written as Max(x, 0): a zero input ties with the constant and gets half, as in PyTorch."""
    x = rnd(2, 3, 4, 4)
    x[0, 0, 0, :2] = 0.0
    grads = check([n("Max", ["x", "zero"])], {"x": x}, ["x"], consts={"zero": np.zeros(1)})
    assert np.all(grads[0][0, 0, 0, :2] != 0)


@pytest.mark.parametrize("op,attrs", [("ReduceL2", dict(axes=[2, 3], keepdims=1)),
                                      ("ReduceL2", dict(axes=[1], keepdims=0)),
                                      ("ReduceSumSquare", dict(axes=[2, 3], keepdims=1))])
def test_reduce_l2(op, attrs):
    check([n(op, ["x"], **attrs)], {"x": rnd(2, 3, 4, 5)}, ["x"], opset=17)


def test_global_max_pool():
    check([n("GlobalMaxPool", ["x"])], {"x": rnd(2, 3, 5, 4)}, ["x"])


def test_instance_norm():
    check([n("InstanceNormalization", ["x", "s", "b"], epsilon=1e-3)], {"x": rnd(2, 4, 3, 5)}, ["x"],
          consts={"s": rnd(4), "b": rnd(4)})


@pytest.mark.parametrize("groups,opset", [(2, 18), (4, 18), (2, 21)])
def test_group_norm(groups, opset):
    """Opset 18 takes scale/bias per group, 21 per channel (and its statistics in float32 unless
    stash_type says double, which the float64 check needs)."""
    per = groups if opset < 21 else 4
    stash = {"stash_type": onnx.TensorProto.DOUBLE} if opset >= 21 else {}
    check([n("GroupNormalization", ["x", "s", "b"], epsilon=1e-3, num_groups=groups, **stash)],
          {"x": rnd(2, 4, 3, 5)},
          ["x"], consts={"s": rnd(per), "b": rnd(per)}, opset=opset)


@pytest.mark.parametrize("reps", [[1, 2, 1, 3], [1, 1, 2, 2]])
def test_tile(reps):
    check([n("Tile", ["x", "r"])], {"x": rnd(2, 3, 2, 3)}, ["x"], consts={"r": np.array(reps, np.int64)})


@pytest.mark.parametrize("op,attrs,shape", [("DepthToSpace", dict(blocksize=2, mode="DCR"), (2, 8, 3, 2)),
                                            ("DepthToSpace", dict(blocksize=2, mode="CRD"), (2, 8, 3, 2)),
                                            ("SpaceToDepth", dict(blocksize=2), (2, 3, 4, 6))])
def test_depth_space(op, attrs, shape):
    check([n(op, ["x"], **attrs)], {"x": rnd(*shape)}, ["x"])


@pytest.mark.parametrize("eq,shapes", [("bchw,dc->bdhw", [(2, 3, 4, 5), (6, 3)]),
                                       ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                                       ("bchw,c->bc", [(2, 3, 4, 5), (3,)]),
                                       ("ij,kl->ik", [(3, 4), (5, 2)])])
def test_einsum(eq, shapes):
    names = [f"x{k}" for k in range(len(shapes))]
    check([n("Einsum", names, equation=eq)], {nm: rnd(*s) for nm, s in zip(names, shapes)}, names)


def relevance_through(node, x, consts=None, opset=18):
    """Relevance of x for a seed relevance on y, under an LRP rule table (single-op graph)."""
    from gradcheck import build, evaluator, with_backward
    from onnxcam.graph.rules.lrp import Composite, Rule, relevance_rules

    model = build([node], {"x": x}, consts or {}, "y", np.float64, opset)
    y = evaluator(model).run(None, {"x": x})[0]
    r = np.abs(R.normal(size=y.shape))
    back = with_backward(model, "y", ["x"], relevance_rules(Composite("eps", Rule("epsilon")), None))
    return r, evaluator(back).run(None, {"x": x, "seed": r})[0]


@pytest.mark.parametrize("op,attrs,shape,consts", [
    ("Tile", {}, (1, 3, 2, 2), {"reps": np.array([1, 1, 2, 3], np.int64)}),
    ("DepthToSpace", {"blocksize": 2}, (1, 8, 2, 3), {}),
    ("SpaceToDepth", {"blocksize": 2}, (1, 2, 4, 4), {}),
    ("GlobalMaxPool", {}, (2, 3, 4, 4), {})], ids=lambda v: v if isinstance(v, str) else None)
def test_relevance_is_conserved_by_ops_that_move_values(op, attrs, shape, consts):
    node = n(op, ["x"] + list(consts), **attrs)
    r, rx = relevance_through(node, rnd(*shape), consts)
    np.testing.assert_allclose(rx.sum(), r.sum(), rtol=1e-12)


@pytest.mark.parametrize("op,attrs,consts", [
    ("Mish", {}, {}), ("Softsign", {}, {}),
    ("GroupNormalization", {"num_groups": 2}, {"s": rnd(2), "b": rnd(2)})],
    ids=lambda v: v if isinstance(v, str) else None)
def test_relevance_passes_element_wise_ops_unchanged(op, attrs, consts):
    r, rx = relevance_through(n(op, ["x"] + list(consts), **attrs), rnd(2, 4, 3, 3), consts)
    np.testing.assert_array_equal(rx, r)


def test_cosine_similarity_target_chain():
    """targets.Embed's S = (e · r̂) / sqrt(e · e + eps): Mul with one tensor on both inputs,
    ReduceSum over the embedding axis, Sqrt and Div, as the target appends them."""
    axes = np.array([1], np.int64)
    nodes = [n("Mul", ["e", "r"], ["er"]), n("ReduceSum", ["er", "axes"], ["dot"], keepdims=1),
             n("Mul", ["e", "e"], ["ee"]), n("ReduceSum", ["ee", "axes"], ["sq"], keepdims=1),
             n("Add", ["sq", "eps"], ["sq_eps"]), n("Sqrt", ["sq_eps"], ["norm"]),
             n("Div", ["dot", "norm"])]
    r = rnd(1, 6)
    check(nodes, {"e": rnd(3, 6)}, ["e"], consts={"r": r / np.linalg.norm(r), "axes": axes,
                                                   "eps": np.array(1e-12)})


def test_region_sum_of_dense_scores():
    """targets.Segment's S_k = Σ_hw mask ⊙ y_k: Mul by a constant mask broadcast over batch and
    classes, ReduceSum over both spatial axes without keepdims."""
    mask = (R.random((1, 1, 4, 5)) > 0.5).astype(np.float64)
    check([n("Mul", ["x", "mask"], ["masked"]), n("ReduceSum", ["masked", "axes"], keepdims=0)],
          {"x": rnd(2, 3, 4, 5)}, ["x"], consts={"mask": mask, "axes": np.array([2, 3], np.int64)})
