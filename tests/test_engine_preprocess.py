"""Provider choice, IOBinding runs, batch sizing, preprocessing specs and NHWC models."""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

import onnxcam
from onnxcam import engine
from onnxcam.preprocess import PreprocessSpec, load_images
from conftest import LITE0, PHOTOS, random_images
from nets import nhwc_wrapper, small_cnn


def test_provider_choice_reports_what_runs():
    chosen = engine.choose_providers(None)
    assert chosen[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert chosen[0] == "CUDAExecutionProvider"
    ex = onnxcam.Explainer(small_cnn())
    assert ex.provider in ort.get_available_providers()
    with pytest.raises(onnxcam.OnnxCamError, match="not available"):
        engine.choose_providers(["NoSuchExecutionProvider"])


def test_iobinding_run_equals_a_plain_session_run():
    model = small_cnn()
    sess = engine.Session(model, ["CPUExecutionProvider"])
    x = random_images(5, (3, 32, 32))
    ours = sess.run({"x": x})["logits"]
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(ours, plain.run(None, {"x": x})[0])
    on_device = sess.to_device(x)      # bound once, reused: what Score-CAM does with its image
    np.testing.assert_array_equal(sess.run({"x": on_device})["logits"], ours)


def test_batch_size_follows_the_memory_budget(lite0):
    graph = lite0.model.proto
    per = engine.per_sample_bytes(graph)
    assert 1e6 < per < 1e9
    assert engine.batch_size(graph, budget_mb=per / 2**20 * 5.5, max_batch=64) == 5
    assert engine.batch_size(graph, budget_mb=0.001, max_batch=64) == 1
    assert engine.batch_size(graph, budget_mb=1e9, max_batch=64) == 64
    assert engine.batch_size(graph, budget_mb=1e9, max_batch=64, batchable=False) == 1


def test_bundled_manifest_preprocessing_is_what_load_images_does(lite0):
    spec = lite0.preprocess
    assert spec.size == (224, 224) and spec.channel_order == "RGB" and spec.layout == "NCHW"
    x = load_images([PHOTOS / "chelsea.jpg"], spec)
    rgb = cv2.cvtColor(cv2.imread(str(PHOTOS / "chelsea.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    manual = ((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(x, manual, atol=1e-5)
    assert lite0.labels[285] == "Egyptian cat"


def test_bgr_nhwc_and_center_crop_specs():
    spec = PreprocessSpec(size=(64, 48), channel_order="BGR", layout="NHWC", resize="center_crop",
                          mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    x, views = load_images([PHOTOS / "chelsea.jpg"], spec, return_views=True)
    assert x.shape == (1, 64, 48, 3) and views[0].shape == (64, 48, 3)
    np.testing.assert_array_equal(x[0], views[0][..., ::-1].astype(np.float32))
    with pytest.raises(onnxcam.OnnxCamError, match="channel_order"):
        PreprocessSpec(channel_order="GBR")


def test_nhwc_model_gives_the_same_maps_as_its_nchw_twin():
    base = small_cnn()
    nchw = onnxcam.Explainer(base)
    nhwc = onnxcam.Explainer(nhwc_wrapper(base))
    assert nhwc.model.layout == "NHWC" and nhwc.model.image_shape == (3, 32, 32)
    assert nhwc.model.auto_layer.name == "feat" and nhwc.model.auto_layer.layout == "NCHW"
    x = random_images(2, (3, 32, 32))
    for method in ("scorecam", "scorecam-pgc", "cam", "eigencam"):
        a = nchw.explain(x, method=method)
        b = nhwc.explain(x.transpose(0, 2, 3, 1), method=method)
        np.testing.assert_allclose(a.raw["feat"], b.raw["feat"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.maps["feat"], b.maps["feat"], atol=1e-5)
