"""Layer fusion (onnxcam/fusion.py): explain(..., layers=[a, b], fuse=True) keeps every layer's
map and adds "fused"; "mean" is pytorch-grad-cam's multi-layer aggregation, "max" LayerCAM's.
(Parity of "mean" with pytorch-grad-cam's GradCAM on several target layers: the DeepLabV3 test in
tests/test_targets_parity.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

import onnxcam
from conftest import LITE0, cat_and_coffee
from onnxcam.cli import main
from onnxcam.errors import OnnxCamError
from onnxcam.fusion import FUSED, fuse_maps
from onnxcam.postprocess import minmax, resize


def two_layers(ex):
    """Two layers of different resolutions: the auto layer (7x7) and one at 28x28."""
    mid = next(l for l in ex.layers if l.preferred and l.height == 28)
    return [mid.name, ex.model.auto_layer.name]


def test_fuse_maps_mean_and_layercam_max():
    a = np.array([[[0.0, 0.5], [1.0, 0.2]]], np.float32)
    b = np.array([[[1.0, 0.1], [0.0, 0.2]]], np.float32)
    raw, fused = fuse_maps([a, b], "mean")
    np.testing.assert_allclose(raw, [[[0.5, 0.3], [0.5, 0.2]]], rtol=1e-6)
    np.testing.assert_allclose(fused, [[[1.0, 1 / 3], [1.0, 0.0]]], atol=1e-5)
    raw, fused = fuse_maps([a, b], "max")
    np.testing.assert_allclose(raw, np.tanh(2 * np.maximum(a, b)), rtol=1e-6)   # tanh is monotone
    assert fused.min() == 0 and fused.max() == pytest.approx(1, abs=1e-6)
    for bad in ("sum", None):
        with pytest.raises(OnnxCamError):
            fuse_maps([a, b], bad)
    with pytest.raises(OnnxCamError, match="same shape"):
        fuse_maps([a, b[:, :1]], "mean")


def test_explain_fuse_keeps_each_layer_and_adds_the_fused_map(lite0):
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    layers = two_layers(lite0)
    plain = lite0.explain(x, "gradcam", layers=layers)
    res = lite0.explain(x, "gradcam", layers=layers, fuse=True)
    assert res.layers == layers + [FUSED]
    for name in layers:
        np.testing.assert_array_equal(res.maps[name], plain.maps[name])
    # each layer as pytorch-grad-cam scales it: ReLU, min-max, resize (no min-max after the resize)
    a, b = (resize(minmax(np.maximum(plain.raw[name], 0)), (224, 224)) for name in layers)
    assert a.max() < 1 - 1e-3    # the 7x7 map's peak, flattened by the upsampling, stays lower
    np.testing.assert_allclose(res.maps[FUSED], minmax((a + b) / 2), atol=1e-6)
    assert res.maps[FUSED].shape == (2, 224, 224) and any("fused: mean" in n for n in res.notes)
    top = lite0.explain(x, "gradcam", layers=layers, fuse="max")
    np.testing.assert_allclose(top.maps[FUSED], minmax(np.maximum(np.tanh(2 * a), np.tanh(2 * b))), atol=1e-6)
    own_run = lite0.explain(x, "relevancecam", layers=layers, fuse=True)   # methods with their own run
    assert own_run.layers == layers + [FUSED] and np.all(np.isfinite(own_run.maps[FUSED]))


def test_fuse_refusals_are_one_line(lite0):
    x = onnxcam.load_images(cat_and_coffee()[:1], lite0.preprocess)
    with pytest.raises(OnnxCamError, match="at least two layers"):
        lite0.explain(x, "gradcam", fuse=True)
    with pytest.raises(OnnxCamError, match="signed relevance"):
        lite0.explain(x, "lrp", layers=two_layers(lite0), fuse=True)
    with pytest.raises(OnnxCamError, match="fuse must be"):
        lite0.explain(x, "gradcam", layers=two_layers(lite0), fuse="median")


def test_cli_fuse_writes_the_fused_overlay_and_grid(lite0, tmp_path, capsys):
    img = str(cat_and_coffee()[0])
    args = ["explain", str(LITE0), img, "--method", "layercam", "--layer", *two_layers(lite0), "--fuse",
            "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"][-1] == FUSED
    names = {p.split("/")[-1] for p in out["files"]}
    assert "chelsea_layercam_fused.png" in names and "chelsea_layercam_grid.png" in names
    with np.load(tmp_path / "chelsea_layercam.npz") as npz:
        assert list(npz["layers"]) == out["layers"] and npz["map_2"].shape == (224, 224)
    assert main(args[:-3] + ["--fuse", "max", "--out", str(tmp_path / "max")]) == 0
    assert main(["explain", str(LITE0), img, "--fuse", "sum", "--out", str(tmp_path)]) == 2
