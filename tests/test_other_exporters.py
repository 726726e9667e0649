"""Gradients of graphs no PyTorch exporter wrote: the production Paddle classifier from rapidocr and
a Keras model exported by tf2onnx (NHWC input with Transposes; converters/export_keras.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxcam
from conftest import PADDLE_CLS, photo_paths
from modelcheck import check_layer_gradient

KERAS = Path(__file__).parent / "fixtures" / "keras_small_nhwc.onnx"


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
