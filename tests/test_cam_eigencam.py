"""CAM equals its closed form; Eigen-CAM equals the first principal component, sign fixed."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from onnxcam.methods.cam import head_weights
from onnxcam.methods.eigencam import principal_map
from conftest import photo_paths, random_images
from nets import head_params, small_cnn


def test_cam_is_the_fc_weighted_sum_and_completes_to_the_logit():
    model = small_cnn(head="gap")
    ex = onnxcam.Explainer(model)
    x = random_images(3, (3, 32, 32), seed=5)
    res = ex.explain(x, method="cam", layers="auto", target=[0, 4, 9])
    wf, bf = head_params(model)
    _, acts = ex.forward(x, ["feat"])
    expected = np.einsum("nk,nkhw->nhw", wf[[0, 4, 9]], acts["feat"])
    np.testing.assert_allclose(res.raw["feat"], expected, rtol=1e-5, atol=1e-6)
    # GAP -> FC: mean over space of the CAM plus the bias is the logit itself
    logits = res.logits[np.arange(3), [0, 4, 9]]
    np.testing.assert_allclose(res.raw["feat"].mean(axis=(1, 2)) + bf[[0, 4, 9]], logits, rtol=1e-5, atol=1e-5)


def test_cam_on_the_bundled_model_completes_to_the_logit(lite0):
    x = onnxcam.load_images(photo_paths(3), lite0.preprocess)
    res = lite0.explain(x, method="cam")
    w, b = head_weights(lite0.model, lite0.model.auto_layer.name)
    assert w.shape == (1000, 1280)
    raw = res.raw[lite0.model.auto_layer.name]
    logit = res.logits[np.arange(3), res.target]
    np.testing.assert_allclose(raw.mean(axis=(1, 2)) + b[res.target], logit, rtol=1e-4, atol=1e-4)
    names = [p.stem for p in photo_paths(3)]
    assert res.target[names.index("chelsea")] == 285      # Egyptian cat
    assert res.target[names.index("coffee")] == 967       # espresso


@pytest.mark.parametrize("head", ["Gemm", "MatMul"])
def test_cam_reads_gemm_and_matmul_heads_through_a_final_softmax(head):
    """GAP -> linear head: the spatial mean of CAM plus the bias is the target's logit exactly.
    The MatMul variant (no bias, as bias-free heads export) takes the other branch of the head reader."""
    from onnx import helper, numpy_helper
    model = small_cnn(final="Softmax")
    wf, bf = head_params(model)
    if head == "MatMul":
        fc = next(n for n in model.graph.node if n.name == "fc")
        fc.CopyFrom(helper.make_node("MatMul", ["flat", "wf_t"], ["logits"], name="fc"))
        model.graph.initializer.append(numpy_helper.from_array(wf.T.copy(), "wf_t"))
        bf = np.zeros_like(bf)
    ex = onnxcam.Explainer(model)
    assert ex.model.final_activation == "Softmax"
    x = random_images(2, (3, 32, 32), seed=2)
    res = ex.explain(x, method="cam", target=[3, 7])
    np.testing.assert_allclose(res.raw["feat"].mean(axis=(1, 2)) + bf[[3, 7]],
                               res.logits[[0, 1], [3, 7]], rtol=1e-5, atol=1e-6)


def test_eigencam_matches_svd_projection_and_fixes_the_sign():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(32, 6, 5))).astype(np.float32)
    a[:, 2:4, 1:3] += 3.0  # a bright blob that dominates the first component
    m = principal_map(a)
    flat = a.reshape(32, -1).T.astype(np.float64)
    flat -= flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    proj = (flat @ vt[0]).reshape(6, 5)
    np.testing.assert_allclose(np.abs(m), np.abs(proj), rtol=1e-5, atol=1e-6)
    assert m[2:4, 1:3].mean() > m.mean()          # positive where the activations are
    np.testing.assert_array_equal(principal_map(a), m)  # deterministic
    # the sign follows the activations, not the SVD: channel order and scale do not flip it
    np.testing.assert_allclose(principal_map(a[::-1] * 3.0), 3.0 * m, rtol=1e-5, atol=1e-5)


def test_eigencam_on_real_photos_highlights_the_object(lite0):
    x, views = onnxcam.load_images(photo_paths(), lite0.preprocess, return_views=True)
    res = lite0.explain(x, method="eigencam")
    maps = res.maps[lite0.model.auto_layer.name]
    assert maps.shape == (len(x), 224, 224)
    assert np.all(maps.min(axis=(1, 2)) == 0) and np.allclose(maps.max(axis=(1, 2)), 1, atol=1e-5)
