"""dS/dA from our ONNX backward graphs equals PyTorch autograd, on torchvision architectures
exported by both PyTorch exporters (random weights, BN statistics perturbed), at three depths.

Layers are found by value: the torch module's output is matched to the catalog tensor holding the
same numbers, so the test needs no knowledge of either exporter's tensor names.

Kinks: torch and onnxruntime may decide a ReLU / ReLU6 unit or a max-pool window differently
where the forward lands within rounding of the kink; torch then takes onnxruntime's decisions and
the flips are counted as their own figure (gateflips.py says why and how).
"""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
from onnxcam.graph.backward import SEED

import torch
import torchvision  # noqa: F401 - test extras: a broken install must fail

DEPTHS = {
    "resnet18": ["layer1", "layer2", "layer4"],
    "resnet50": ["layer1", "layer3", "layer4"],
    "vgg16_bn": ["features.12", "features.32", "features.42"],
    "mobilenet_v2": ["features.3", "features.10", "features.18"],
    "mobilenet_v3_small": ["features.2", "features.6", "features.12"],
    "efficientnet_b0": ["features.2", "features.5", "features.8"],
    "densenet121": ["features.denseblock1", "features.transition2", "features.denseblock4"],
    "convnext_tiny": ["features.1", "features.3", "features.7"],
}
# ConvNeXt-Tiny at 64 px (2x2 at its last stage): all its LayerNorm intermediates at 112 px took 3 GB
SIZE: dict = {"convnext_tiny": 64}
# VGG-16-BN's features and every layer type as torchvision has them, but a 3x3 adaptive pool (7x7
# would need 224 px inputs) and a 256-wide classifier (4096 holds 120 M weights): at 224 px with the
# full head one test took 10 GB; the suite must stay under 4 GB
ARCH_KW = {"vgg16_bn": {"head_width": 256, "head_pool": 3}}


def torch_gradients(net, x, modules, seed):
    acts = {}
    hooks = [dict(net.named_modules())[m].register_forward_hook(
        lambda mod, inp, out, m=m: acts.__setitem__(m, out)) for m in modules]
    xt = torch.from_numpy(x)
    try:
        logits = net(xt)
        for a in acts.values():
            a.retain_grad()
        (logits * torch.from_numpy(seed)).sum().backward()
    finally:
        for h in hooks:
            h.remove()
    return logits.detach().numpy(), {m: (acts[m].detach().numpy(), acts[m].grad.numpy()) for m in modules}


def match_layer(ex, acts, activation):
    """The catalog tensor whose values equal this torch activation (the first if several)."""
    c, h, w = activation.shape[1:]
    candidates = [l for l in ex.layers if l.shape == (c, h, w)]
    scale = np.abs(activation).max()
    close = [l for l in candidates
             if np.abs(acts[l.name] - activation).max() <= 1e-4 * max(scale, 1e-6)]
    assert close, f"no ONNX tensor holds the torch activation of shape {activation.shape}"
    return min(close, key=lambda l: l.depth)  # the producer, not a later copy (e.g. 1-input Concat)


@pytest.mark.slow
@pytest.mark.own_process
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("arch", list(DEPTHS))
def test_gradients_equal_pytorch_autograd(arch, exporter, export_dir):
    from export_torchvision import build, export
    size = SIZE.get(arch, 112)
    _, path = export(arch, export_dir / f"{arch}_{exporter}" / "model.onnx", exporter=exporter,
                     size=size, seed=0, verify=False, randomize_bn=True, **ARCH_KW.get(arch, {}))
    net = build(arch, seed=0, randomize_bn=True, **ARCH_KW.get(arch, {}))   # a fresh copy: exporters may leave hooks behind
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    rng = np.random.default_rng(0)
    seed = np.zeros((2, 1000), np.float32)
    seed[0, 7] = 1.0
    seed[1] = rng.normal(size=1000)           # a weight vector over classes
    # one run for every catalog tensor: the kinks are aligned to the very forward pass whose
    # gradients are compared (another session may fuse ops differently and round differently)
    scores, _, onnx_acts, grads = ex.gradients(x, ex.layers, target=seed)
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    assert_same_run(gates, onnx_acts)
    with aligned_gates(gates) as flips:
        logits, ref = torch_gradients(net, x, DEPTHS[arch], seed)
    print(f"{arch}/{exporter}: {flips.report()}")
    flips.check()
    layers = [match_layer(ex, onnx_acts, ref[m][0]) for m in DEPTHS[arch]]
    np.testing.assert_allclose(scores, logits, rtol=1e-3, atol=1e-4 * np.abs(logits).max())
    for m, layer in zip(DEPTHS[arch], layers):
        g_ref = ref[m][1]
        err = np.abs(grads[layer.name] - g_ref).max() / np.abs(g_ref).max()
        assert np.abs(g_ref).max() > 0
        # same branch on both sides, so float32 rounding only: the backward repeats the forward's
        # sums (FORWARD_RTOL's argument, gateflips.py) on the transposed weights
        assert err <= 1e-4, f"{arch}/{exporter} {m} ({layer.name}): max relative error {err:.2e}; {flips.report()}"
