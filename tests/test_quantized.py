"""FP16 and INT8 deployments of the bundled model go through intake and forward-only methods."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import cat_and_coffee


@pytest.mark.parametrize("variant,min_pearson", [("fp16", 0.999), ("int8_static", 0.99),
                                                 ("int8_dynamic", 0.98)])  # measured 0.998 / 0.990
def test_scorecam_on_quantized_builds_agrees_with_fp32(lite0, lite0_variants, variant, min_pearson):
    ex = onnxcam.Explainer(lite0_variants[variant], preprocess=lite0.preprocess)
    assert ex.model.auto_layer.shape == (1280, 7, 7)
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    ref = lite0.explain(x, method="scorecam", top_k=128)
    got = ex.explain(x, method="scorecam", top_k=128, target=ref.target)
    a, b = next(iter(ref.maps.values())), next(iter(got.maps.values()))
    for i in range(len(x)):
        r = np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1]
        assert r >= min_pearson, (variant, i, r)
    np.testing.assert_array_equal(got.logits.argmax(1), ref.target)
