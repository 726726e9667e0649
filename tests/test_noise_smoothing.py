"""smooth="grad"|"var" (onnxcam/smoothing.py): SmoothGrad / VarGrad over any method's maps. Its
definition on the bundled model (the mean / variance of the maps of the noisy copies run one by
one), its identity with the smoothgrad / vargrad methods, and Captum's NoiseTunnel on ResNet-18."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from onnxcam.errors import OnnxCamError
from onnxcam.smoothing import noisy_copies


@pytest.mark.parametrize("method, kind", [("gradcam", "grad"), ("hirescam", "var")])
def test_smooth_is_the_mean_or_variance_of_the_copies_run_one_by_one(lite0, method, kind):
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    targets = lite0.forward(x)[0].argmax(axis=1)
    samples = 3
    smooth = lite0.explain(x, method, smooth=kind, samples=samples, noise=0.2, seed=7)
    layer = smooth.layers[0]
    copies = noisy_copies(x, range(len(x)), samples, 0.2, 7)
    one_by_one = np.stack([lite0.explain(c[None], method, target=int(t)).raw[layer][0]
                           for c, t in zip(copies, np.repeat(targets, samples))]).astype(np.float64)
    one_by_one = one_by_one.reshape((len(x), samples) + one_by_one.shape[1:])
    want = one_by_one.mean(axis=1) if kind == "grad" else one_by_one.var(axis=1)
    np.testing.assert_allclose(smooth.raw[layer], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_array_equal(smooth.target, targets)
    np.testing.assert_allclose(smooth.logits, lite0.forward(x)[0], rtol=1e-6)
    assert smooth.maps[layer].shape == (len(x),) + tuple(lite0.model.image_shape[1:])
    assert 0 <= smooth.maps[layer].min() and smooth.maps[layer].max() <= 1
    assert f"smooth={kind}" in smooth.notes[-1]
    assert smooth.variant == f"{'SmoothGrad' if kind == 'grad' else 'VarGrad'}, 3 noisy copies"   # captions
    # copies differ from the image: the smoothed map is not the plain one
    assert not np.allclose(smooth.raw[layer], lite0.explain(x, method).raw[layer])


def test_saliency_smoothed_is_smoothgrad_and_vargrad(lite0):
    """Same draws: saliency (|∇S|) smoothed is the smoothgrad method, its variance vargrad's."""
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    for kind, method in (("grad", "smoothgrad"), ("var", "vargrad")):
        ours = lite0.explain(x, "saliency", smooth=kind, samples=3, seed=5).pixels["input"]
        theirs = lite0.explain(x, method, samples=3, seed=5).pixels["input"]
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


def test_smooth_keeps_a_given_target_and_fuses(lite0):
    x = onnxcam.load_images(photo_paths(1), lite0.preprocess)
    layers = [l.name for l in lite0.layers[-3:]]
    res = lite0.explain(x, "layercam", layers=layers, target=7, fuse="mean", smooth="grad", samples=2)
    assert list(res.target) == [7] and "fused" in res.maps and res.maps["fused"].shape[1:] == x.shape[2:]


@pytest.mark.parametrize("method, options, words", [
    ("gradcam", {"smooth": "mean"}, "smooth"),
    ("gradcam", {"smooth": "grad", "samples": 0}, "samples"),
    ("gradcam", {"smooth": "grad", "noise": -1.0}, "noise"),
    ("smoothgrad", {"smooth": "grad"}, "its own noisy samples"),
    ("sscam", {"smooth": "var"}, "its own noisy samples"),
])
def test_bad_smooth_options_are_one_line(lite0, method, options, words):
    with pytest.raises(OnnxCamError, match=words) as e:
        lite0.explain(photo_paths(1), method, **options)
    assert "\n" not in str(e.value)


def test_cli_smooth_with_several_methods_and_evaluate(tmp_path, capsys):
    from onnxcam.cli import main
    photo = str(photo_paths(1)[0])
    code = main(["explain", "models/efficientnet_lite0/model.onnx", photo, "--method", "gradcam,saliency",
                 "--smooth", "var", "--samples", "2", "--out", str(tmp_path / "maps"), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "smooth=var" in out.out
    code = main(["evaluate", "models/efficientnet_lite0/model.onnx", photo, "--methods", "gradcam",
                 "--smooth", "grad", "--samples", "2", "--steps", "4", "--no-road", "--out", str(tmp_path / "ev")])
    assert code == 0, capsys.readouterr().err
    import json
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["methods"]["gradcam"]["options"] == {"smooth": "grad", "samples": 2}


@pytest.mark.own_process
def test_smooth_equals_captum_noise_tunnel(export_dir):
    """Captum's NoiseTunnel (smoothgrad, vargrad) over LayerGradCam at ResNet-18's layer4 and over
    InputXGradient, with its noise replaced by our draws (NoiseTunnel._add_noise_to_input, which
    repeats each image nt_samples times and adds torch.normal noise). Raw Grad-CAM maps and pixel
    attributions; ReLU units may flip by rounding: Pearson ≥ 0.999 per image."""
    import torch
    from captum.attr import InputXGradient, LayerGradCam, NoiseTunnel
    from captum.attr._core.noise_tunnel import NoiseTunnel as Tunnel
    from torchpairs import last_layer, torchvision_pair
    net, ex, x = torchvision_pair("resnet18", export_dir)
    layer = last_layer(ex, "/layer4/")
    targets = torch.from_numpy(ex.forward(x)[0].argmax(axis=1))
    samples, level, seed = 4, 0.15, 3
    copies = torch.from_numpy(noisy_copies(x, range(len(x)), samples, level, seed))
    original = Tunnel._add_noise_to_input
    Tunnel._add_noise_to_input = staticmethod(lambda inp, stdev, n: copies.clone())
    try:
        for kind, nt in (("grad", "smoothgrad"), ("var", "vargrad")):
            ref = NoiseTunnel(LayerGradCam(net, net.layer4)).attribute(
                torch.from_numpy(x), nt_type=nt, nt_samples=samples, target=targets).detach().numpy()[:, 0]
            ours = ex.explain(x, "gradcam", layers=layer, smooth=kind, samples=samples, noise=level, seed=seed)
            for a, b in zip(ours.raw[layer], ref):
                r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
                print(f"NoiseTunnel {nt} LayerGradCam: Pearson {r:.6f}")
                assert r >= 0.999
            ref = NoiseTunnel(InputXGradient(net)).attribute(
                torch.from_numpy(x), nt_type=nt, nt_samples=samples, target=targets).detach().numpy()
            ours = ex.explain(x, "inputxgradient", smooth=kind, samples=samples, noise=level, seed=seed)
            for a, b in zip(ours.pixels["input"], ref):
                r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
                print(f"NoiseTunnel {nt} InputXGradient: Pearson {r:.6f}")
                assert r >= 0.999
    finally:
        Tunnel._add_noise_to_input = original


def test_copies_split_across_calls_give_the_same_maps(lite0, monkeypatch):
    from onnxcam import smoothing
    assert smoothing._calls(5, 16) == [(range(0, 4), range(16)), (range(4, 5), range(16))]
    assert smoothing._calls(1, 100) == [(range(0, 1), range(0, 64)), (range(0, 1), range(64, 100))]
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    whole = lite0.explain(x, "gradcam", smooth="var", samples=3)
    monkeypatch.setattr(smoothing, "COPIES_PER_CALL", 2)    # each image's copies in two calls
    assert smoothing._calls(2, 3) == [(range(0, 1), range(0, 2)), (range(0, 1), range(2, 3)),
                                      (range(1, 2), range(0, 2)), (range(1, 2), range(2, 3))]
    split = lite0.explain(x, "gradcam", smooth="var", samples=3)
    layer = whole.layers[0]
    np.testing.assert_allclose(split.raw[layer], whole.raw[layer], rtol=1e-4, atol=1e-6 * np.abs(whole.raw[layer]).max())
