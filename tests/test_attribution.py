"""Input attributions (methods/attribution.py): saliency, Input×Gradient, SmoothGrad, VarGrad,
Integrated Gradients, GradientSHAP.

Parity: on a small Conv-BN-SiLU/Tanh network exported by torch.onnx (smooth gates: no kink, so
float32 rounding is the only difference) each attribution equals Captum's on the same points within 1e-4 of its
largest magnitude (the backward repeats the forward's sums in float32; the bound is the one
test_autograd_parity states). On ResNet-18 (ReLU and max-pool: a gate within rounding of its
kink may be decided differently by torch and onnxruntime at some of the many path points) the
attributions correlate at Pearson ≥ 0.999, the issue's bar. Random methods (SmoothGrad, VarGrad,
GradientSHAP) are checked as their definitions on the same draws, rebuilt here from the seed in
the order attribution.py draws them.
"""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from nets import small_cnn
from onnxcam.errors import OnnxCamError
from onnxcam.methods.attribution import DEFAULTS, path_nodes
from torchpairs import last_layer, torchvision_pair


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                  "riemann_middle"])
def test_path_nodes_integrate_polynomials_as_each_rule_promises(rule):
    alphas, weights = path_nodes(8, rule)
    assert np.isclose(weights.sum(), 1.0) and np.all((alphas >= 0) & (alphas <= 1))
    exact_degree = {"gausslegendre": 15, "riemann_trapezoid": 1, "riemann_middle": 1}.get(rule, 0)
    for degree in range(exact_degree + 1):   # ∫₀¹ αᵈ dα = 1/(d+1), exactly up to the rule's degree
        assert np.isclose((weights * alphas ** degree).sum(), 1 / (degree + 1), rtol=1e-12)


def _linear_model(tmp_path):
    """small_cnn with its ReLUs made Identity and its max-pool an average pool: S is affine in
    x, so every path attribution is exact (completeness Σ attr = S(x) − S(b) to rounding)."""
    import onnx
    model = small_cnn(size=16)
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.op_type = "Identity"
        if node.op_type == "MaxPool":
            node.op_type = "AveragePool"
    path = tmp_path / "linear.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("baseline", ["zero", "black", "blur", "noise"])
def test_integrated_gradients_are_complete_on_a_linear_model(tmp_path, baseline):
    ex = onnxcam.Explainer(_linear_model(tmp_path))
    x = np.random.default_rng(1).normal(size=(3, 3, 16, 16)).astype(np.float32)
    r = ex.explain(x, "integrated-gradients", steps=2, baseline=baseline)
    # float32 gradients summed over 768 inputs: relative rounding well under 1e-4
    np.testing.assert_allclose(r.conservation["input"], 1.0, atol=1e-4)
    assert r.pixels["input"].shape == (3, 3, 16, 16) and "completeness" in r.notes[-1]


def test_saliency_family_maps_on_the_bundled_model(lite0):
    photos = photo_paths(2)
    for method, options in [("saliency", {}), ("inputxgradient", {}), ("smoothgrad", {"samples": 3}),
                            ("vargrad", {"samples": 3}), ("integrated-gradients", {"steps": 4}),
                            ("gradientshap", {"samples": 3})]:
        r = lite0.explain(photos, method, **options)
        m = r.maps["input"]
        assert m.shape == (2, 224, 224) and np.all(np.isfinite(m)) and m.std() > 0, method
        assert r.pixels["input"].shape == (2, 3, 224, 224)
        np.testing.assert_array_equal(r.target, r.logits.argmax(axis=1))


def test_random_methods_repeat_with_a_seed_and_change_without(lite0):
    photo = photo_paths(1)
    a = lite0.explain(photo, "smoothgrad", samples=2, seed=3).pixels["input"]
    b = lite0.explain(photo, "smoothgrad", samples=2, seed=3).pixels["input"]
    c = lite0.explain(photo, "smoothgrad", samples=2, seed=4).pixels["input"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


@pytest.mark.parametrize("options, words", [
    ({"steps": 0}, "option steps"), ({"steps": True}, "option steps"), ({"rule": "simpson"}, "one of"),
    ({"baseline": "white"}, "one of"), ({"seed": -1}, "option seed"), ({"noise": float("nan")}, "option noise"),
])
def test_bad_options_are_one_line(lite0, options, words):
    method = "smoothgrad" if "noise" in options else "integrated-gradients"
    with pytest.raises(OnnxCamError, match=words) as e:
        lite0.explain(photo_paths(1), method, **options)
    assert "\n" not in str(e.value)


# --- parity with Captum -------------------------------------------------------------------------

def _smooth_net():
    """Conv-BN-SiLU ×2, Conv-Tanh, GAP, Linear: every gate smooth (no kink), so torch and
    onnxruntime differ by float32 rounding only. (torchvision's EfficientNet-B0 is smooth too, but
    at random init its input gradients vanish to ~1e-16, where rounding dominates.)"""
    import torch
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU(),
                        nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.SiLU(),
                        nn.Conv2d(32, 32, 3, 1, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 10))
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _torch_pair(arch, export_dir, size):
    if arch == "smooth":
        import torch
        net = _smooth_net()
        path = export_dir / "attr_smooth.onnx"
        torch.onnx.export(net, torch.zeros(1, 3, size, size), str(path), input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, dynamo=False)
        ex = onnxcam.Explainer(path)
        return net, ex, onnxcam.load_images(photo_paths(2), ex.preprocess)
    return torchvision_pair(arch, export_dir, size)


def _check(ours, ref, exact):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if exact:
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    for a, b in zip(ours, ref):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999


def _sigma(x, level):
    axes = tuple(range(1, x.ndim))
    return level * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))


@pytest.mark.own_process
@pytest.mark.parametrize("arch, exact", [("smooth", True), ("resnet18", False)])
def test_attributions_equal_captum(arch, exact, export_dir):
    import torch
    from captum.attr import InputXGradient, IntegratedGradients, Saliency
    from onnxcam.methods.attribution import GRADIENTSHAP_BASELINES, sample_rng
    from onnxcam.methods.attribution import baseline as make_baseline
    from onnxcam.methods.base import Request
    net, ex, x = _torch_pair(arch, export_dir, 64)
    xt = torch.from_numpy(x)
    targets = ex.forward(x)[0].argmax(axis=1)
    tt = torch.from_numpy(targets)

    _check(ex.explain(x, "saliency").pixels["input"], Saliency(net).attribute(xt, tt).detach().numpy(), exact)
    _check(ex.explain(x, "inputxgradient").pixels["input"], InputXGradient(net).attribute(xt, tt).detach().numpy(), exact)
    ig = IntegratedGradients(net)
    for rule, baseline in [("gausslegendre", "zero"), ("riemann_trapezoid", "blur")]:
        r = ex.explain(x, "integrated-gradients", steps=8, rule=rule, baseline=baseline)
        base = make_baseline(Request(ex, x, [], None, None, {}), baseline)
        ref = ig.attribute(xt, torch.from_numpy(base.astype(np.float32)), tt, n_steps=8, method=rule)
        # Captum's riemann_trapezoid spaces its 8 nodes 1/7 apart but weighs them with steps of 1/8
        # (weights summing to 7/8); ours is the trapezoid rule on the same nodes (weights sum to 1,
        # complete on affine models): Captum's × 8/7
        scale = 8 / 7 if rule == "riemann_trapezoid" else 1.0
        _check(r.pixels["input"], scale * ref.detach().numpy(), exact)

    # SmoothGrad / VarGrad: Captum's NoiseTunnel over Saliency, on our draws
    samples, level = 3, DEFAULTS["noise"]
    sigma = _sigma(x.astype(np.float64), level)
    noisy = np.stack([[x[i] + sigma[i] * sample_rng(5, i, s).standard_normal(x.shape[1:]) for s in range(samples)]
                      for i in range(len(x))])
    sal = Saliency(net)
    grads = np.stack([sal.attribute(torch.from_numpy(noisy[:, s].astype(np.float32)), tt).detach().numpy()
                      for s in range(samples)], axis=1).astype(np.float64)
    _check(ex.explain(x, "smoothgrad", samples=samples, seed=5).pixels["input"], grads.mean(axis=1), exact)
    _check(ex.explain(x, "vargrad", samples=samples, seed=5).pixels["input"], grads.var(axis=1), exact)

    # GradientSHAP: (x̃ − b)·∇S(b + α(x̃ − b)) averaged (Captum's InputBaselineXGradient at one α
    # per sample), baselines {zero, blur}, on our draws; autograd per point since Captum draws α itself
    req = Request(ex, x, [], None, None, {})
    bases = [make_baseline(req, k) for k in GRADIENTSHAP_BASELINES]
    ref = np.zeros(x.shape)
    for i in range(len(x)):
        for s in range(samples):
            rng = sample_rng(6, i, s)
            noisy = x[i] + sigma[i] * rng.standard_normal(x.shape[1:])
            b = bases[rng.integers(len(bases))][i]
            point = torch.from_numpy((b + rng.random() * (noisy - b))[None].astype(np.float32)).requires_grad_()
            net(point)[0, int(targets[i])].backward()
            ref[i] += (noisy - b) * point.grad.numpy()[0].astype(np.float64) / samples
    _check(ex.explain(x, "gradientshap", samples=samples, seed=6).pixels["input"], ref, exact)


# --- perturbation maps (methods/perturbation.py) ------------------------------------------------

def test_occlusion_windows_cover_every_pixel():
    from onnxcam.methods.perturbation import window_starts
    assert window_starts(64, 16, 8) == [0, 8, 16, 24, 32, 40, 48]
    assert window_starts(10, 4, 4) == [0, 4, 6]      # a last window flush with the edge
    assert window_starts(5, 5, 3) == [0]


def test_occlusion_and_rise_maps_on_the_bundled_model(lite0):
    photos = photo_paths(2)
    for method, options in [("occlusion", {"window": 56, "stride": 56}), ("rise", {"masks": 64, "grid": 7})]:
        r = lite0.explain(photos, method, **options)
        m = r.maps["input"]
        assert m.shape == (2, 224, 224) and np.all(np.isfinite(m)) and m.std() > 0, method
        np.testing.assert_array_equal(r.target, r.logits.argmax(axis=1))


@pytest.mark.parametrize("method, options, words", [
    ("occlusion", {"window": 0}, "option window"), ("occlusion", {"stride": 225}, "1..224"),
    ("rise", {"keep": 1.0}, "option keep"), ("rise", {"masks": 0}, "option masks"), ("rise", {"grid": 2.5}, "option grid"),
])
def test_bad_perturbation_options_are_one_line(lite0, method, options, words):
    with pytest.raises(OnnxCamError, match=words) as e:
        lite0.explain(photo_paths(1), method, **options)
    assert "\n" not in str(e.value)


@pytest.mark.own_process
def test_occlusion_equals_captum_and_rise_its_definition(export_dir):
    """Forwards only, so no kink can differ: float32 rounding of the scores is the only
    difference (1e-4 of the largest attribution, as above)."""
    import torch
    from captum.attr import Occlusion
    from onnxcam.methods.perturbation import rise_masks
    net, ex, x = _torch_pair("resnet18", export_dir, 64)
    targets = ex.forward(x)[0].argmax(axis=1)
    ours = ex.explain(x, "occlusion", window=16, stride=8).raw["input"]
    ref = Occlusion(net).attribute(torch.from_numpy(x), sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8),
                                   target=torch.from_numpy(targets)).numpy()
    np.testing.assert_allclose(ref[:, 0], ref[:, 2])          # one window covers all channels
    _check(ours, ref[:, 0], exact=True)

    masks = rise_masks(np.random.default_rng(3), 40, 4, 0.5, (64, 64))
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(x[:, None] * masks[None]).reshape(-1, 3, 64, 64)), 1)
    probs = probs.numpy().reshape(len(x), 40, -1)[np.arange(len(x)), :, targets]
    ref = np.einsum("nm,mhw->nhw", probs.astype(np.float64), masks[:, 0]) / (40 * 0.5)
    _check(ex.explain(x, "rise", masks=40, grid=4, seed=3).raw["input"], ref, exact=True)


# --- FullGrad (methods/fullgrad.py) -------------------------------------------------------------

def test_fullgrad_on_the_bundled_model(lite0):
    from onnxcam.methods.fullgrad import bias_layers
    assert len(bias_layers(lite0.model)) >= 40          # every conv of Lite0 carries a (folded BN) bias
    r = lite0.explain(photo_paths(2), "fullgrad")
    m = r.maps["input"]
    assert m.shape == (2, 224, 224) and np.all(np.isfinite(m)) and m.std() > 0
    assert np.isclose(m.max(), 1.0, atol=1e-6) and m.min() >= 0


@pytest.mark.own_process
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_fullgrad_equals_pytorch_grad_cam(exporter, export_dir):
    """ResNet-18: pytorch-grad-cam's FullGrad takes its 20 BatchNorm2d biases; the export has them
    folded into the convs (TorchScript) or intake folds them; ReLU kinks may flip, so Pearson."""
    import torch
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    net, ex, x = torchvision_pair("resnet18", export_dir, exporter=exporter)
    r = ex.explain(x, "fullgrad")
    ref = FullGrad(net, [])(torch.from_numpy(x), [ClassifierOutputTarget(int(t)) for t in r.target])
    assert "20 bias layers" in r.notes[-1]
    print(f"FullGrad {exporter}: max |difference| {np.abs(r.maps['input'] - ref).max():.1e}")   # README (-s)
    for ours, theirs in zip(r.maps["input"], ref):
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.999


# --- Ablation-CAM (methods/ablationcam.py, graph/ablation.py) -----------------------------------

def test_ablationcam_weights_are_the_relative_drop_of_the_score(tmp_path):
    """small_cnn: ablating channel k in the graph equals zeroing it by hand and rerunning the head
    in numpy (GAP -> Gemm), so each weight is (S - S_k) / S to float32 rounding."""
    import onnx
    model = small_cnn(size=16)
    path = tmp_path / "cnn.onnx"
    onnx.save(model, path)
    ex = onnxcam.Explainer(path)
    x = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    r = ex.explain(x, "ablationcam", layers="feat")
    wf, bf = (onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("wf", "bf"))
    _, acts = ex.forward(x, ["feat"])
    pooled = acts["feat"].astype(np.float64).mean(axis=(2, 3))
    for i, c in enumerate(r.target):
        s = pooled[i] @ wf[c] + bf[c]
        ablated = s - pooled[i] * wf[c]            # channel k's contribution removed (fill 0: post-ReLU)
        np.testing.assert_allclose(r.weights["feat"][i], (s - ablated) / s, rtol=1e-4, atol=1e-6)


@pytest.mark.own_process
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_ablationcam_equals_pytorch_grad_cam(exporter, export_dir):
    """ResNet-18 layer3 and layer4 (post-ReLU outputs: both ablate to 0, where pytorch-grad-cam's
    ablation value is exact); forwards only, so float32 rounding is the only difference."""
    import torch
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from test_autograd_parity import match_layer
    net, ex, x = torchvision_pair("resnet18", export_dir, images=1, exporter=exporter)
    _, acts = ex.forward(x, ex.layers)
    for module in (net.layer3, net.layer4) if exporter == "torchscript" else (net.layer4,):
        with torch.no_grad():
            hooked = {}
            h = module.register_forward_hook(lambda m, i, o: hooked.__setitem__("a", o))
            net(torch.from_numpy(x))
            h.remove()
        layer = match_layer(ex, acts, hooked["a"].numpy())
        r = ex.explain(x, "ablationcam", layers=layer.name)
        cam = AblationCAM(net, [module])
        ref = cam(torch.from_numpy(x), [ClassifierOutputTarget(int(t)) for t in r.target])
        for ours, theirs in zip(r.maps[layer.name], ref):
            assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.999


# --- SS-CAM and IS-CAM (methods/scorecam_smoothed.py) -------------------------------------------

@pytest.mark.own_process
def test_sscam_and_iscam_equal_torchcam(export_dir):
    """ResNet-18 layer4 at 64 px (2x2 maps, 512 channels), TorchCAM's SSCAM fed our noise draws
    (its sampler replaced) and its ISCAM; forwards only, so float32 rounding of the scores, then a
    softmax over 512 channels and a weighted sum: Pearson of the raw maps >= 0.999."""
    import torch
    from torchcam.methods import ISCAM, SSCAM
    net, ex, x = torchvision_pair("resnet18", export_dir, images=1)
    layer = last_layer(ex, "/layer4/")
    target = int(ex.forward(x)[0].argmax())
    samples = 2
    ours = ex.explain(x, "sscam", layers=layer, samples=samples, seed=4)
    cam = SSCAM(net, "layer4", num_samples=samples, input_shape=(3, 64, 64))
    draws = iter([torch.from_numpy(np.stack([np.stack([np.random.default_rng([4, 0, s, k]).standard_normal(
        (64, 64), np.float32) for k in range(512)])]) * np.float32(2.0)) for s in range(samples)])
    cam._distrib.sample = lambda size: next(draws)
    with torch.no_grad():
        net(torch.from_numpy(x))
    theirs = cam(class_idx=target, normalized=False)[0].numpy()
    cam.remove_hooks()
    assert np.corrcoef(np.maximum(ours.raw[layer][0], 0).ravel(), theirs[0].ravel())[0, 1] >= 0.999

    ours = ex.explain(x, "iscam", layers=layer, samples=3)
    cam = ISCAM(net, "layer4", num_samples=3, input_shape=(3, 64, 64))
    with torch.no_grad():
        net(torch.from_numpy(x))
    theirs = cam(class_idx=target, normalized=False)[0].numpy()
    cam.remove_hooks()
    assert np.corrcoef(np.maximum(ours.raw[layer][0], 0).ravel(), theirs[0].ravel())[0, 1] >= 0.999


# --- Group-CAM (methods/groupcam.py) ------------------------------------------------------------

def test_group_masks_follow_torch_chunk_and_the_70th_percentile():
    from onnxcam.methods.groupcam import group_masks
    rng = np.random.default_rng(0)
    weighted = rng.normal(size=(10, 4, 4))
    masks = group_masks(weighted, 4, (8, 8))       # torch.chunk(10, 4): sizes 3, 3, 3, 1
    assert len(masks) == 4 and masks.min() >= 0 and np.allclose(masks.max(axis=(1, 2)), 1)
    m = np.maximum(weighted[:3].sum(axis=0), 0)
    assert (m > np.percentile(m, 70)).sum() <= 5     # at most 30% of 16 cells survive the percentile


def test_groupcam_on_the_bundled_model(lite0):
    r = lite0.explain(photo_paths(2), "groupcam", groups=8)
    m = r.maps[r.layers[0]]
    assert m.shape == (2, 224, 224) and np.all(np.isfinite(m)) and m.std() > 0


@pytest.mark.own_process
def test_groupcam_equals_the_authors_algorithm(export_dir):
    """The authors' GroupCAM.forward replicated in torch on ResNet-18 layer4 (random weights, 64
    px; the same cv2 blur for both, kornia not being a test dependency). ReLU kinks may flip in the
    gradient: Pearson >= 0.999."""
    import torch
    import torch.nn.functional as F
    from onnxcam.methods.groupcam import blurred
    net, ex, x = torchvision_pair("resnet18", export_dir, images=1)
    layer = last_layer(ex, "/layer4/")
    ours = ex.explain(x, "groupcam", layers=layer, groups=16).maps[layer][0]

    acts = {}
    net.layer4.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    xt = torch.from_numpy(x)
    logit = net(xt)
    c = int(logit.argmax())
    a = acts["a"]
    a.retain_grad()
    logit[0, c].backward()
    weighted = (a.grad.mean(dim=(2, 3), keepdim=True) * a).detach()
    base = torch.from_numpy(blurred(x[0], "NCHW")[None])
    with torch.no_grad():
        start = F.softmax(net(base), -1)[0, c]
        total = torch.zeros(1, 1, 64, 64)
        for chunk in weighted.chunk(16, 1):
            m = F.relu(chunk.sum(1, keepdim=True))
            m = torch.where(m > float(np.percentile(m.numpy(), 70)), m, torch.zeros_like(m))
            m = F.interpolate(m, size=(64, 64), mode="bilinear", align_corners=False)
            if m.max() == m.min():
                continue
            m = (m - m.min()) / (m.max() - m.min())
            total += (F.softmax(net(xt * m + base * (1 - m)), -1)[0, c] - start) * m
    ref = F.relu(total)[0, 0].numpy()
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] >= 0.999
