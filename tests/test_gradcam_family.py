"""The Grad-CAM family: exact identities, parity with pytorch-grad-cam, and quantized builds."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import cat_and_coffee, photo_paths, random_images
from gateflips import aligned_gates, last_explain_graph, onnx_gates
from nets import head_params, small_cnn

GRADIENT_METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigengradcam"]


def test_gap_fc_head_hirescam_equals_gradcam_equals_cam_over_hw():
    ex = onnxcam.Explainer(small_cnn(head="gap"))
    x = random_images(3, (3, 32, 32), seed=7)
    t = [1, 5, 8]
    cam = ex.explain(x, method="cam", layers="feat", target=t).raw["feat"]
    grad = ex.explain(x, method="gradcam", layers="feat", target=t).raw["feat"]
    hires = ex.explain(x, method="hirescam", layers="feat", target=t).raw["feat"]
    hw = 16 * 16
    np.testing.assert_allclose(grad, cam / hw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hires, cam / hw, rtol=1e-5, atol=1e-7)


def test_bundled_model_identity_at_the_auto_layer(lite0):
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    layer = lite0.model.auto_layer.name
    cam = lite0.explain(x, method="cam").raw[layer]
    grad = lite0.explain(x, method="gradcam").raw[layer]
    hires = lite0.explain(x, method="hirescam").raw[layer]
    scale = np.abs(cam / 49).max()
    np.testing.assert_allclose(grad, cam / 49, atol=1e-5 * scale)
    np.testing.assert_allclose(hires, cam / 49, atol=1e-5 * scale)


def test_flatten_fc_head_hirescam_is_complete_and_differs_from_gradcam():
    model = small_cnn(head="flatten")
    ex = onnxcam.Explainer(model)
    _, bf = head_params(model)
    x = random_images(2, (3, 32, 32), seed=9)
    t = [2, 6]
    hires = ex.explain(x, method="hirescam", layers="feat", target=t)
    grad = ex.explain(x, method="gradcam", layers="feat", target=t)
    y = hires.logits[np.arange(2), t]
    # completeness: Σ_ij HiResCAM = y_c - b_c (the head is linear in the flattened features)
    np.testing.assert_allclose(hires.raw["feat"].sum(axis=(1, 2)), y - bf[t], rtol=1e-4, atol=1e-4)
    corr = [np.corrcoef(hires.raw["feat"][i].ravel(), grad.raw["feat"][i].ravel())[0, 1] for i in range(2)]
    assert max(corr) < 0.9


def test_weight_vector_target_is_the_weighted_sum_of_one_hot_gradients():
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(2, (3, 32, 32), seed=1)
    w = np.zeros(10, np.float32)
    w[[2, 7]] = [0.25, 0.75]
    ag = ex.activations_and_gradients(x, "feat", target=w)["feat"][1]
    g2 = ex.activations_and_gradients(x, "feat", target=2)["feat"][1]
    g7 = ex.activations_and_gradients(x, "feat", target=7)["feat"][1]
    np.testing.assert_allclose(ag, 0.25 * g2 + 0.75 * g7, rtol=1e-5, atol=1e-8)


def test_all_layers_in_one_run_on_the_bundled_model(lite0):
    x = onnxcam.load_images(photo_paths(1), lite0.preprocess)
    res = lite0.explain(x, method="gradcam", layers="all")
    assert len(res.maps) == len([l for l in lite0.layers if l.preferred]) > 20
    for name, m in res.maps.items():
        assert m.shape == (1, 224, 224) and np.isfinite(m).all(), name


def _dequantize_linear(proto, tensor):
    """The float tensor a DequantizeLinear node computes from initializers: (q - zp) * scale, per
    channel along its axis (float64, so the expectation below is not itself rounded)."""
    from onnx import numpy_helper
    node = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == tensor)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    q, scale, zp = (inits[i] for i in node.input)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q - zp.reshape(shape)) * scale.reshape(shape) if scale.size > 1 else (q - zp) * scale


def test_static_int8_gradients_are_the_straight_through_estimate(lite0, lite0_variants):
    """Static INT8 QDQ (Conv -> QuantizeLinear -> DequantizeLinear; the quantizer drops the Clip
    after each Conv, QuantizeLinear saturates instead): the gradient is the float VJP of the graph
    with Q/DQ as identity and the dequantized weights, exactly. At the head, GAP + FC gives
    dS/dA = W_fc[t] / 49 everywhere; one layer earlier the 1x1 head Conv comes in (no Clip mask:
    the saturation is part of the rounding that straight-through ignores). What a given quantizer
    does to the maps is a benchmark (tests/benchmarks/agreement_figures.py), not a test."""
    ex = onnxcam.Explainer(lite0_variants["int8_static"], preprocess=lite0.preprocess)
    proto = ex.model.proto
    fc = next(n for n in proto.graph.node if n.op_type == "Gemm")
    head = next(n for n in proto.graph.node if n.output[0] == "/_swish_1/Clip_output_0")
    assert head.op_type == "Conv"
    w_fc = _dequantize_linear(proto, fc.input[1])                  # [1000, 1280] (transB)
    w_head = _dequantize_linear(proto, head.input[1])[:, :, 0, 0]  # [1280, 320]
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    inner = "/_blocks.15/_project_conv/Conv_output_0_DequantizeLinear_Output"
    outer = "/_swish_1/Clip_output_0_DequantizeLinear_Output"
    assert head.input[0] == inner
    _, t, _, grads = ex.gradients(x, [inner, outer])
    expect_outer = np.broadcast_to((w_fc[t] / 49.0)[:, :, None, None], grads[outer].shape)
    # float32 rounding only: one division by 49 (outer), a 1280-term dot product (inner)
    np.testing.assert_allclose(grads[outer], expect_outer, rtol=1e-5, atol=1e-9)
    expect_inner = np.einsum("ck,nchw->nkhw", w_head, expect_outer)
    np.testing.assert_allclose(grads[inner], expect_inner, rtol=1e-4, atol=1e-6 * np.abs(expect_inner).max())


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_gradient_method_runs_on_the_static_int8_build(lite0, lite0_variants, method):
    """Each method's map on the QDQ build is a real map (a zero gradient, which a naive rule for
    rounding gives, would leave it all zero). Its agreement with FP32 depends on the quantizer and
    is printed by tests/benchmarks/agreement_figures.py."""
    ex = onnxcam.Explainer(lite0_variants["int8_static"], preprocess=lite0.preprocess)
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    got = ex.explain(x, method=method, target=[285, 967])
    (raw,), (maps,) = got.raw.values(), got.maps.values()
    assert np.isfinite(raw).all() and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    for i in range(len(x)):
        assert np.abs(raw[i]).max() > 0 and maps[i].max() > maps[i].min(), (method, i)


def test_fp16_build_gradients(lite0, lite0_variants):
    """FP16 (float32 I/O, Casts at the edges): the gradient at the head is W_fc[t] / 49 of the
    float16 weights. The tolerance is float16's rounding, should the backward run in float16: the
    one-hot Gemm VJP is exact, the division by 49 rounds once or twice (unit roundoff 2^-11 =
    4.9e-4), and values below 6.1e-5 are subnormal, spaced 2^-24 = 6e-8 apart. How FP16 moves the maps is
    printed by tests/benchmarks/compare_table.py."""
    from onnx import numpy_helper
    ex = onnxcam.Explainer(lite0_variants["fp16"], preprocess=lite0.preprocess)
    proto = ex.model.proto
    fc = next(n for n in proto.graph.node if n.op_type == "Gemm")
    # the float16 weight, read directly or through the Cast onnxruntime inserts before ops it
    # runs in float32 on this device (which ones is onnxruntime's choice, not ours)
    name = fc.input[1]
    cast = next((n for n in proto.graph.node if n.output[0] == name and n.op_type == "Cast"), None)
    name = cast.input[0] if cast is not None else name
    w_fc = next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == name)
    assert w_fc.dtype == np.float16
    layer = ex.model.auto_layer.name
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    _, t, _, grads = ex.gradients(x, [layer])
    expect = np.broadcast_to((w_fc[t].astype(np.float64) / 49.0)[:, :, None, None], grads[layer].shape)
    np.testing.assert_allclose(grads[layer], expect, rtol=1e-3, atol=6e-8)
    res = ex.explain(x, method="gradcam", target=t)
    assert np.isfinite(res.maps[layer]).all() and all(np.ptp(m) > 0 for m in res.maps[layer])


def _dequantized(proto, node, weight_index=1, channel_axis=0):
    """sw * (W - zw) of an integer op from the initializers (the quantizer names the weight's
    scale <weight>_scale next to <weight>_quantized)."""
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    name = node.input[weight_index]
    w, zp = inits[name], inits[node.input[weight_index + 2]]
    scale = inits[name.replace("_quantized", "_scale")]
    shape = [1] * w.ndim
    shape[channel_axis] = -1
    per_channel = lambda v: np.reshape(v, shape) if np.size(v) > 1 else v  # noqa: E731
    return (w - per_channel(zp)) * per_channel(scale)


def test_dynamic_int8_gradients_are_the_straight_through_estimate(lite0, lite0_variants):
    """Dynamic INT8 (DynamicQuantizeLinear -> ConvInteger/MatMulInteger -> Cast -> Mul -> Add):
    the gradient is the float VJP with dequantized weights, exactly. At the head: GAP + FC gives
    dS/dA = W_fc[:, t] / 49 everywhere; one layer earlier the 1x1 ConvInteger and the ReLU6 mask
    (read from the candidate's own forward) come in."""
    ex = onnxcam.Explainer(lite0_variants["int8_dynamic"], preprocess=lite0.preprocess)
    proto = ex.model.proto
    fc = next(n for n in proto.graph.node if n.op_type == "MatMulInteger")
    head = [n for n in proto.graph.node if n.op_type == "ConvInteger"][-1]
    w_fc = _dequantized(proto, fc, channel_axis=1)            # [1280, 1000]
    w_head = _dequantized(proto, head)[:, :, 0, 0]            # [1280, 320]
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    inner, outer = "/_blocks.15/_project_conv/Conv_output_0", "/_swish_1/Clip_output_0"
    _, t, acts, grads = ex.gradients(x, [inner, outer])
    expect_outer = np.broadcast_to((w_fc[:, t].T / 49.0)[:, :, None, None], grads[outer].shape)
    np.testing.assert_allclose(grads[outer], expect_outer, rtol=1e-5, atol=1e-9)
    inside = (acts[outer] > 0) & (acts[outer] < 6)             # ReLU6 passes strictly inside
    expect_inner = np.einsum("ck,nchw->nkhw", w_head, expect_outer * inside)
    np.testing.assert_allclose(grads[inner], expect_inner, rtol=1e-4, atol=1e-7)
    res = ex.explain(x, method="gradcam", target=t)           # and the method runs end to end
    assert np.isfinite(res.maps[outer]).all() and res.maps[outer].max() == pytest.approx(1.0, abs=1e-3)


def test_qoperator_int8_says_what_to_do(tmp_path):
    """QOperator-format quantization (QLinearConv ...) keeps every feature map in uint8: there is
    nothing float to explain, and the error says which format works."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src, dst = tmp_path / "small.onnx", tmp_path / "small_qop.onnx"
    import onnx
    onnx.save(small_cnn(head="gap"), src)
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": random_images(1, (3, 32, 32), seed=s)} for s in range(4)])
        def get_next(self):
            return next(self.items, None)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QOperator)
    ex = onnxcam.Explainer(dst)
    with pytest.raises(onnxcam.OnnxCamError, match=r"all integer \(QOperator.*QuantFormat.QDQ"):
        ex.explain(random_images(1, (3, 32, 32)), method="gradcam")


@pytest.mark.slow
@pytest.mark.parametrize("method", GRADIENT_METHODS + ["eigencam"])
def test_equal_to_pytorch_grad_cam_on_resnet18(method, export_dir):
    """Raw maps equal pytorch-grad-cam's; Eigen-CAM maps up to the SVD's sign, which pgc leaves
    arbitrary and we fix. torch takes onnxruntime's ReLU/MaxPool decisions (gateflips.py)."""
    import torch
    import torchvision  # noqa: F401 - test extras: a broken install must fail
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from export_torchvision import build, export

    path = export_dir / "resnet18_pgc.onnx"
    if not path.exists():
        export("resnet18", path, size=160, seed=0, verify=False)
    net = build("resnet18", seed=0)
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(3), ex.preprocess)
    cls = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM, "gradcam++": pgc.GradCAMPlusPlus,
           "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigengradcam": pgc.EigenGradCAM,
           "eigencam": pgc.EigenCAM}[method]
    eigen = method.startswith("eigen")
    for torch_layer, prefix in ((net.layer4, "/layer4/"), (net.layer3, "/layer3/")):
        layer = max((l for l in ex.layers if l.name.startswith(prefix)), key=lambda l: l.depth)
        res = ex.explain(x, method=method, layers=layer.name)
        graph, batch = last_explain_graph(ex)      # torch takes this run's gate decisions
        gates = onnx_gates(graph, {ex.model.input_name: x}, batch)
        cam = cls(model=net, target_layers=[torch_layer])
        targets = [ClassifierOutputTarget(int(t)) for t in res.target]
        xt = torch.from_numpy(x)
        with aligned_gates(gates) as flips:
            maps = cam(input_tensor=xt, targets=targets)
        flips.check()
        acts = cam.activations_and_grads.activations[0].numpy()
        saved = cam.activations_and_grads.gradients
        grads = saved[0].numpy() if saved else None
        raw = cam.get_cam_image(xt, torch_layer, targets, acts, grads, False)
        for i in range(len(x)):
            ours = res.raw[layer.name][i]
            if eigen:
                ours = ours * np.sign(np.sum(ours * raw[i]))
            r = np.corrcoef(raw[i].ravel(), ours.ravel())[0, 1]
            # float32 rounding on one branch: the autograd parity's bound (1e-4 of the largest
            # value), then the method's own sums and products over the channels
            np.testing.assert_allclose(ours, raw[i], rtol=1e-3, atol=1e-4 * np.abs(raw[i]).max(),
                                       err_msg=f"{method} {prefix} image {i} (Pearson {r:.6f}); {flips.report()}")
        if not eigen:
            assert np.abs(maps - res.maps[layer.name]).max() < 1e-3


def test_guided_relu_passes_only_positive_cotangents_of_active_units():
    from onnx import helper
    from gradcheck import build, evaluator, with_backward
    from onnxcam.graph.rules.guided import GUIDED_RULES
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
    m = build([helper.make_node("Relu", ["x"], ["y"])], {"x": x}, {}, "y", np.float64)
    seed = np.random.default_rng(1).normal(size=x.shape)
    g = evaluator(with_backward(m, "y", ["x"], GUIDED_RULES)).run(None, {"x": x, "seed": seed})[0]
    np.testing.assert_array_equal(g, np.maximum(seed, 0) * (x > 0))


@pytest.mark.slow
def test_guided_backprop_equals_pytorch_grad_cam_on_resnet18(export_dir):
    import torch
    import torchvision  # noqa: F401 - test extras: a broken install must fail
    from pytorch_grad_cam import GuidedBackpropReLUModel
    from export_torchvision import build, export

    path = export_dir / "resnet18_pgc.onnx"
    if not path.exists():
        export("resnet18", path, size=160, seed=0, verify=False)
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    res = ex.explain(x, method="guided-backprop")
    gb = GuidedBackpropReLUModel(build("resnet18", seed=0), device="cpu")
    for i in range(len(x)):
        ref = gb(torch.from_numpy(x[i:i + 1]), target_category=int(res.target[i]))  # [H, W, C]
        ours = res.pixels["input"][i].transpose(1, 2, 0)
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
