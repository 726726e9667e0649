"""Intake on real exports and on graphs with the defects real exporters produce (DESIGN §3)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnxcam
from onnxcam import intake
from conftest import LITE0, PADDLE_CLS, random_images, require_torch
from nets import small_cnn


def test_bundled_lite0_catalog_and_auto(lite0):
    m = lite0.model
    assert m.layout == "NCHW" and m.image_shape == (3, 224, 224) and m.num_classes == 1000
    assert m.batchable
    auto = m.auto_layer
    # the head: conv 320->1280, ReLU6 (Clip), then global average pooling
    assert (auto.op, auto.shape) == ("Clip", (1280, 7, 7))
    assert auto == max((l for l in m.layers if l.shape == (1280, 7, 7)), key=lambda l: l.depth)
    # BASIC canonicalization collapsed the TorchScript same-padding chains
    assert len(m.proto.graph.node) < 120
    assert all(n.domain in ("", "ai.onnx") for n in m.proto.graph.node)
    assert [i.domain for i in m.proto.opset_import if i.domain] == []


def test_canonical_graph_computes_what_the_export_does(lite0):
    x = random_images(3, (3, 224, 224))
    sess = ort.InferenceSession(str(LITE0), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    scores, _ = lite0.forward(x)
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)


def test_paddle_cls_export_is_upgraded_and_explained():
    ex = onnxcam.Explainer(PADDLE_CLS)
    m = ex.model
    assert any("opset 11 -> 17" in n for n in m.notes)
    assert m.final_activation == "Softmax" and m.num_classes == 2
    assert m.image_shape == (3, 48, 192) and m.batchable
    assert m.auto_layer is not None and m.auto_layer.height * m.auto_layer.width > 1
    # auto is the deepest feature map (the tensor the pooling/flatten head reads)
    assert m.auto_layer.depth == max(l.depth for l in m.layers if l.preferred or l == m.auto_layer)
    x = random_images(2, (3, 48, 192))
    scores, _ = ex.forward(x)
    sess = ort.InferenceSession(str(PADDLE_CLS), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {sess.get_inputs()[0].name: x})[0].reshape(2, -1)
    ours = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(ours, probs, atol=1e-5)


def test_fixed_batch_reshape_is_patched_and_verified():
    model = small_cnn(head="flatten", static_batch=True)
    m = intake.load(model)
    assert any("patched 1 Reshape" in n for n in m.notes) and m.batchable
    ex = onnxcam.Explainer(model)
    x = random_images(4, (3, 32, 32))
    batch4, acts4 = ex.forward(x, ["feat"])
    singles = np.concatenate([ex.forward(x[i:i + 1])[0] for i in range(4)])
    np.testing.assert_allclose(batch4, singles, rtol=1e-5, atol=1e-6)
    # and the original export really was wrong at batch 4: it cannot run it at all
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception):
        sess.run(None, {"x": x})


def test_unbatchable_model_falls_back_to_single_images():
    model = small_cnn(head="gap")
    # A Reshape to [1, 16] that our patch cannot see (computed shape) keeps the model batch-1 only
    from onnx import helper, numpy_helper
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array([1, 16], np.int64), "s1"))
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "s0"))
    g.node.insert(len(g.node) - 1, helper.make_node("Add", ["s1", "s0"], ["s_computed"], name="add_shape"))
    flat = next(n for n in g.node if n.name == "flatten")
    idx = list(g.node).index(flat)
    g.node.remove(flat)
    g.node.insert(idx, helper.make_node("Reshape", ["gap", "s_computed"], ["flat"], name="flatten"))
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    m = intake.load(model)
    assert not m.batchable
    assert any("image by image" in n for n in m.notes)
    ex = onnxcam.Explainer(model)
    x = random_images(3, (3, 32, 32))
    res = ex.explain(x, method="eigencam", layers="feat")
    assert res.raw["feat"].shape == (3, 16, 16)


@pytest.mark.parametrize("final", ["Softmax", "Sigmoid"])
def test_final_activation_is_skipped_by_default(final):
    model = small_cnn(final=final)
    ex = onnxcam.Explainer(model)
    assert ex.model.final_activation == final and ex.model.score_name == "logits"
    plain = onnxcam.Explainer(small_cnn())
    x = random_images(2, (3, 32, 32))
    np.testing.assert_allclose(ex.forward(x)[0], plain.forward(x)[0], rtol=1e-6)
    probs = onnxcam.Explainer(model, score="output")
    assert probs.model.final_activation is None
    p = probs.forward(x)[0]
    assert np.all((p >= 0) & (p <= 1))


def test_small_cnn_catalog():
    m = intake.load(small_cnn())
    names = {l.name: l for l in m.layers}
    assert names["feat"].shape == (16, 16, 16) and names["feat"].preferred
    assert not names["conv2"].preferred  # only feeds a ReLU: the ReLU output stands for it
    assert m.auto_layer.name == "feat"


def test_dynamo_export_of_lite0_with_external_data(export_dir):
    require_torch()
    from export_efficientnet_lite0 import export
    path = export_dir / "lite0_dynamo" / "model.onnx"
    path.parent.mkdir(exist_ok=True)
    export(path, exporter="dynamo")
    assert any(p.suffix == ".data" for p in path.parent.iterdir()), "dynamo writes external data"
    ex = onnxcam.Explainer(path)
    ref = onnxcam.Explainer(LITE0)
    assert ex.model.batchable
    assert ex.model.auto_layer.shape == (1280, 7, 7)
    x = random_images(2, (3, 224, 224))
    np.testing.assert_allclose(ex.forward(x)[0], ref.forward(x)[0], rtol=1e-3, atol=1e-3)


def test_a_reshape_whose_minus_one_is_the_batch_keeps_the_batch_symbol(tmp_path):
    """dynamo writes ShuffleNet's channel shuffle as Reshape(x, [-1, 2, 24, 8, 8]) with allowzero=1:
    shape inference names a new symbol for the -1 and every later tensor lost its batch (12 catalog
    layers instead of 74). Canonicalization turns such a -1 into 0 ("copy dim 0"): exact whenever
    the other entries account for all of the input's other dims, whatever dim 0 is."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxcam.intake import canonical
    from onnxcam.intake.catalog import tensor_shapes
    target = numpy_helper.from_array(np.array([-1, 2, 2, 2, 2], np.int64), "t")
    back = numpy_helper.from_array(np.array([-1, 4, 2, 2], np.int64), "b")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "t"], ["shuffled"], allowzero=1),
         helper.make_node("Reshape", ["shuffled", "b"], ["y"], allowzero=1),
         helper.make_node("Relu", ["y"], ["z"])],
        "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 2, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [target, back])
    path = tmp_path / "model.onnx"   # canonicalize re-reads the file it spills beside, under this name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    shapes = tensor_shapes(canonical.canonicalize(str(path)))
    assert shapes["shuffled"] == ("N", 2, 2, 2, 2) and shapes["y"] == ("N", 4, 2, 2), shapes
