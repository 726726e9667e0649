"""FP16 and INT8 deployments of the bundled model go through intake and forward-only methods.

What a quantizer does to the maps (agreement with FP32) depends on its calibration and changes
between onnxruntime releases: it is printed by tests/benchmarks/compare_table.py, not asserted.
"""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import cat_and_coffee


@pytest.mark.parametrize("variant", ["fp16", "int8_static", "int8_dynamic"])
def test_scorecam_runs_on_quantized_builds(lite0, lite0_variants, variant):
    """Intake finds the head layer through Casts and Q/DQ, and Score-CAM scores exactly the
    top-k channels asked for with the build's own forward: a real map, finite, in [0, 1]."""
    ex = onnxcam.Explainer(lite0_variants[variant], preprocess=lite0.preprocess)
    assert ex.model.auto_layer.shape == (1280, 7, 7)
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    got = ex.explain(x, method="scorecam", top_k=32, target=[285, 967])
    (weights,), (maps,) = got.weights.values(), got.maps.values()
    assert weights.shape == (2, 1280) and np.all(np.count_nonzero(weights, axis=1) <= 32)
    assert np.all(weights >= 0) and np.all(weights <= 1)       # softmax probabilities of the target
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert all(maps[i].max() > maps[i].min() for i in range(2))
