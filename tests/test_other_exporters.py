"""Gradients of graphs no PyTorch exporter wrote: the production Paddle classifier from rapidocr,
a Keras model exported by tf2onnx (NHWC input with Transposes; converters/export_keras.py) and a
Keras application, MobileNetV3Small with its Rescaling layer, HardSwish and squeeze-excitation
(converters/export_keras_apps.py; tests/fixtures/NOTE.md says how it was made)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import onnxcam
from conftest import PADDLE_CLS, photo_paths
from modelcheck import check_layer_gradient

KERAS = Path(__file__).parent / "fixtures" / "keras_small_nhwc.onnx"
KERAS_APP = Path(__file__).parent / "fixtures" / "keras_mobilenetv3small_tiny.onnx"
sys.path.insert(0, str(Path(__file__).parent / "zoo"))
import sweep  # noqa: E402 - the zoo sweep's checks, reused


def seeds(n, k, rng):
    s = np.zeros((n, k))
    s[0, 0] = 1.0
    s[1:] = rng.normal(size=(n - 1, k))
    return s


@pytest.mark.parametrize("pick", ["auto", "middle", "first"])
def test_paddle_classifier_gradients_equal_finite_differences(pick):
    ex = onnxcam.Explainer(PADDLE_CLS)
    layers = [l for l in ex.layers if l.preferred]
    layer = {"auto": ex.model.auto_layer, "middle": layers[len(layers) // 2], "first": layers[1]}[pick]
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    check_layer_gradient(ex, x, layer.name, seeds(2, 2, np.random.default_rng(0)))


@pytest.mark.parametrize("pick", ["auto", "residual", "first"])
def test_tf2onnx_keras_gradients_equal_finite_differences(pick):
    ex = onnxcam.Explainer(KERAS, preprocess={"mean": [0, 0, 0], "std": [1, 1, 1], "size": [32, 32]})
    assert ex.model.layout == "NHWC"
    by_name = {"auto": ex.model.auto_layer, "first": ex.layers[0],
               "residual": next(l for l in ex.layers if "residual" in l.name)}
    layer = by_name[pick]
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    check_layer_gradient(ex, x, layer.name, seeds(2, 5, np.random.default_rng(1)))


def test_tf2onnx_keras_gradcam_runs_in_nhwc():
    ex = onnxcam.Explainer(KERAS, preprocess={"mean": [0, 0, 0], "std": [1, 1, 1], "size": [32, 32]})
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    res = ex.explain(x, method="gradcam", layers="all")
    assert all(m.shape == (2, 32, 32) for m in res.maps.values())


@pytest.fixture(scope="module")
def keras_app():
    """The application, preprocessed as the sidecar next to it says (raw 0..255 pixels, NHWC)."""
    ex = onnxcam.Explainer(KERAS_APP)
    assert ex.model.layout == "NHWC" and tuple(ex.preprocess.size) == (64, 64)
    return ex


def test_keras_application_explains_with_every_method(keras_app):
    """The zoo sweep's checks on the suite's Keras application: every method runs, every map is
    finite and not constant (CAM reads its NHWC ReduceMean -> MatMul head)."""
    row = {}
    sweep.explain_all(keras_app, row)
    assert row["methods"] == {m: "✓" for m in sweep.METHODS}


@pytest.mark.parametrize("pick", ["auto", "middle", "rescaling"])
def test_keras_application_gradients_equal_finite_differences(keras_app, pick):
    """dS/dA at the auto layer, a squeeze-excitation block in the middle and the Rescaling layer's
    output (everything between: Transposes, HardSwish as x * HardSigmoid-like Clip chains, SE
    gates) against float64 finite differences of the model itself, on noise images (a photo's
    flat regions put units exactly on a kink)."""
    layers = keras_app.layers
    layer = {"auto": keras_app.model.auto_layer, "middle": layers[len(layers) // 2],
             "rescaling": next(l for l in layers if "rescaling" in l.name)}[pick]
    x = np.concatenate([sweep.noise_image(keras_app.preprocess, seed) for seed in (0, 1)])
    check_layer_gradient(keras_app, x, layer.name, seeds(2, 10, np.random.default_rng(2)), rtol=1e-5,
                         floor=1e-3)
