"""Targets on real torchvision models (random weights), against pytorch-grad-cam and autograd.

Segmentation: Grad-CAM / HiResCAM at FCN-ResNet50's backbone.layer4 with Segment(cls, mask) equal
pytorch-grad-cam's GradCAM / HiResCAM with SemanticSegmentationTarget(cls, mask) on the same torch
model, and dS/dA equals pytorch-grad-cam's (autograd's) gradient; the same for DeepLabV3 and
LRASPP (MobileNetV3-Large backbones) through both exporters at two backbone depths, with the
fused map of both layers equal to pytorch-grad-cam's multi-layer GradCAM. torch takes onnxruntime's gate
decisions (gateflips.py: ReLU kinks may flip between runtimes). Embedding: ResNet-18 without its
fc, cosine similarity to a reference embedding, gradients equal autograd.
"""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
from onnxcam.graph.backward import SEED
from onnxcam.metrics.agreement import pearson
from onnxcam.targets import Embed, Output, Segment

import torch
import torchvision  # noqa: F401 - test extras: a broken install must fail

SIZE = 96


class DenseOut(torch.nn.Module):
    """torchvision segmenters return {"out": ...}; exporters and pytorch-grad-cam want the tensor."""
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["out"]


def segmenter(arch: str, classes: int = 6):
    torch.manual_seed(0)
    net = getattr(torchvision.models.segmentation, arch)(weights=None, weights_backbone=None,
                                                         num_classes=classes, aux_loss=False)
    with torch.no_grad():  # BN statistics away from 0/1, so layers are not near-identities
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return DenseOut(net).eval()


def export(net, path, exporter: str = "torchscript", size: int = SIZE):
    x = torch.zeros(1, 3, size, size)
    if exporter == "dynamo":
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["image"], output_names=["out"],
                          dynamic_shapes={"x": {0: torch.export.Dim("N", min=1, max=64)}})
    else:
        torch.onnx.export(net, x, str(path), dynamo=False, input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "N"}, "out": {0: "N"}}, opset_version=17)
    return path


def match_layer(ex, acts, activation):
    """The catalog tensor holding the torch activation's values (the producer if several)."""
    scale = np.abs(activation).max()
    close = [l for l in ex.layers if l.shape == activation.shape[1:]
             and np.abs(acts[l.name] - activation).max() <= 1e-4 * scale]
    assert close, f"no ONNX tensor holds the torch activation of shape {activation.shape}"
    return min(close, key=lambda l: l.depth)


@pytest.mark.slow
@pytest.mark.own_process
def test_segment_gradcam_hirescam_equal_pytorch_grad_cam(tmp_path):
    from pytorch_grad_cam import GradCAM, HiResCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    net = segmenter("fcn_resnet50")
    path = export(net, tmp_path / "fcn.onnx")
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[20:70, 30:80] = 1.0
    cls = 2
    ex = onnxcam.Explainer(path, target=Segment(cls=cls, mask=mask),
                           preprocess={"size": [SIZE, SIZE]})
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    seed = np.eye(6, dtype=np.float32)[[cls, cls]]
    scores, targets, acts, grads = ex.gradients(x, ex.layers, target=[cls, cls])
    assert list(targets) == [cls, cls]
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    assert_same_run(gates, acts)
    module = net.net.backbone.layer4
    with aligned_gates(gates) as flips:
        xt = torch.from_numpy(x)
        out = net(xt).detach().numpy()
        expected = (out * mask).sum(axis=(2, 3))   # S_k = Σ mask ⊙ y_k, every k
        np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
        theirs = {}
        for name, cam_class in (("gradcam", GradCAM), ("hirescam", HiResCAM)):
            with cam_class(model=net, target_layers=[module]) as cam:
                cam(input_tensor=xt, targets=[SemanticSegmentationTarget(cls, mask)] * 2)
                a = cam.activations_and_grads.activations[0].numpy()
                g = cam.activations_and_grads.gradients[0].numpy()
                theirs[name] = (a, g, cam.get_cam_image(xt, module, None, a, g, False))
    print(f"fcn_resnet50 segment: {flips.report()}")
    flips.check()
    a, g, _ = theirs["gradcam"]
    layer = match_layer(ex, acts, a)
    assert layer.shape == (2048, SIZE // 8, SIZE // 8)
    err = np.abs(grads[layer.name] - g).max() / np.abs(g).max()
    print(f"dS/dA at {layer.name}: max relative error {err:.2e}")
    assert np.abs(g).max() > 0 and err < 1e-4
    for name, (_, _, raw) in theirs.items():
        res = ex.explain(x, name, layers=layer.name)
        for i in range(len(x)):
            r = pearson(res.raw[layer.name][i], raw[i])
            print(f"{name} image {i}: raw Pearson {r:.6f}")
            assert r >= 0.999, (name, i, r)


@pytest.mark.own_process
def test_segment_argmax_region_scorecam_lrp_run(tmp_path):
    net = segmenter("lraspp_mobilenet_v3_large", classes=4)
    path = export(net, tmp_path / "lraspp.onnx")
    ex = onnxcam.Explainer(path, target=Segment(), preprocess={"size": [SIZE, SIZE]})
    assert ex.model.num_classes == 4 and ex.model.default_target is None
    auto = ex.model.auto_layer
    assert auto.channels != 4 and auto.height == SIZE // 16, auto   # the coarsest features before upsampling
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    region = out.argmax(axis=1)[:, None] == np.arange(4)[None, :, None, None]
    expected = (out * region).sum(axis=(2, 3))
    for method in ("gradcam", "scorecam", "lrp"):
        res = ex.explain(x, method)
        np.testing.assert_allclose(res.logits, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
        assert list(res.target) == list(expected.argmax(axis=1))   # the dominant class by default
        for raw in res.raw.values():
            assert np.all(np.isfinite(raw)) and all(np.ptp(r) > 0 for r in raw), method


@pytest.mark.own_process
def test_embed_cosine_gradients_equal_autograd(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    net.eval()
    path = tmp_path / "embed.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False, input_names=["image"],
                      output_names=["embedding"], dynamic_axes={"image": {0: "N"}, "embedding": {0: "N"}},
                      opset_version=17)
    base = onnxcam.Explainer(path, target=Output("embedding"), preprocess={"size": [SIZE, SIZE]})
    x = onnxcam.load_images(photo_paths(3), base.preprocess)
    reference = base.forward(x[2:])[0][0]            # S of Output is the embedding itself
    assert reference.shape == (512,)
    ex = base.with_target(Embed(reference))
    assert ex.model.num_classes == 1
    scores, _, acts, grads = ex.gradients(x[:2], ex.layers, target=0)
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x[:2], SEED: np.ones((2, 1), np.float32)}, batch)
    module_out = {}
    net.layer3.register_forward_hook(lambda m, i, o: module_out.__setitem__("a", o))
    with aligned_gates(gates) as flips:
        e = net(torch.from_numpy(x[:2]))
        cos = torch.nn.functional.cosine_similarity(e, torch.from_numpy(reference)[None], dim=1)
        a = module_out["a"]
        a.retain_grad()
        cos.sum().backward()
    flips.check()
    np.testing.assert_allclose(scores[:, 0], cos.detach().numpy(), atol=1e-5)
    layer = match_layer(ex, acts, a.detach().numpy())
    g = a.grad.numpy()
    assert np.abs(grads[layer.name] - g).max() <= 1e-4 * np.abs(g).max()
    assert ex.explain(x[2:], "hirescam").logits[0, 0] == pytest.approx(1.0, abs=1e-5)  # itself


# torchvision module names of two depths per segmenter, in forward order: a /8 stage and the /16
# backbone output (LRASPP's "low" and "high" inputs; DeepLabV3's input to ASPP)
SEGMENTER_LAYERS = {"deeplabv3_mobilenet_v3_large": ["backbone.6", "backbone.16"],
                    "lraspp_mobilenet_v3_large": ["backbone.4", "backbone.16"]}
SEG_SIZE = 160


def segment_parity(net, path, modules, classes: int, argmax_region: bool) -> list[str]:
    """Grad-CAM / HiResCAM raw maps at each module vs pytorch-grad-cam's with
    SemanticSegmentationTarget, dS/dA vs autograd, and the fused map of all modules vs
    pytorch-grad-cam's multi-layer GradCAM. The region is either a rectangle or (argmax_region)
    each image's predicted region of the class, read from onnxruntime's own output and handed to
    pytorch-grad-cam as its mask, as its tutorial builds one. Returns lines for the log."""
    from pytorch_grad_cam import GradCAM, HiResCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    spec = {"size": [SEG_SIZE, SEG_SIZE]}
    probe = onnxcam.Explainer(path, target=Output("out"), preprocess=spec)   # the logits, flattened
    x = onnxcam.load_images(photo_paths(2), probe.preprocess)
    out = probe.forward(x)[0].reshape(len(x), classes, SEG_SIZE, SEG_SIZE)
    del probe
    if argmax_region:
        top = out.argmax(axis=1)
        cls = int(np.bincount(top.ravel(), minlength=classes).argmax())   # the class most predicted
        masks = [(t == cls).astype(np.float32) for t in top]
        assert all(m.sum() > 0 for m in masks)
        target = Segment(cls=cls)
    else:
        cls, mask = 1, np.zeros((SEG_SIZE, SEG_SIZE), np.float32)
        mask[30:120, 40:140] = 1.0
        masks, target = [mask, mask], Segment(cls=1, mask=mask)
    ex = onnxcam.Explainer(path, target=target, preprocess=spec)
    seed = np.eye(classes, dtype=np.float32)[[cls, cls]]
    scores, _, acts, grads = ex.gradients(x, ex.layers, target=[cls, cls])
    region = (top[:, None] == np.arange(classes)[None, :, None, None]) if argmax_region \
        else np.stack(masks)[:, None]                   # S_k sums class k over k's own region
    np.testing.assert_allclose(scores, (out * region).sum(axis=(2, 3)), rtol=1e-4,
                               atol=1e-5 * np.abs(scores).max())
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    assert_same_run(gates, acts)
    named = dict(net.net.named_modules())
    targets = [SemanticSegmentationTarget(cls, m) for m in masks]
    xt = torch.from_numpy(x)
    theirs = {}
    with aligned_gates(gates) as flips:
        for name, cam_class in (("gradcam", GradCAM), ("hirescam", HiResCAM)):
            with cam_class(model=net, target_layers=[named[m] for m in modules]) as cam:
                fused = cam(input_tensor=xt, targets=targets)
                pairs = zip(cam.activations_and_grads.activations, cam.activations_and_grads.gradients)
                per_layer = [(a.numpy(), g.numpy(), cam.get_cam_image(xt, None, None, a.numpy(), g.numpy(), False))
                             for a, g in pairs]
                theirs[name] = (per_layer, fused)
    flips.check()
    log = [flips.report()]
    layers = [match_layer(ex, acts, a).name for a, _, _ in theirs["gradcam"][0]]
    for layer, (_, g, _) in zip(layers, theirs["gradcam"][0]):
        err = np.abs(grads[layer] - g).max() / np.abs(g).max()
        log.append(f"dS/dA at {layer}: max relative error {err:.2e}")
        assert np.abs(g).max() > 0 and err < 1e-4, log
    for name, (per_layer, fused) in theirs.items():
        res = ex.explain(x, name, layers=layers, fuse=True)
        for layer, (_, _, raw) in zip(layers, per_layer):
            r = min(pearson(res.raw[layer][i], raw[i]) for i in range(len(x)))
            log.append(f"{name} at {layer}: raw Pearson {r:.6f}")
            assert r >= 0.999, log
        r = min(pearson(res.maps["fused"][i], fused[i]) for i in range(len(x)))
        log.append(f"{name} fused ({', '.join(layers)}): Pearson {r:.6f} to pytorch-grad-cam's multi-layer map")
        assert r >= 0.999, log
    return log


@pytest.mark.slow
@pytest.mark.own_process
@pytest.mark.parametrize("arch, exporters", [("deeplabv3_mobilenet_v3_large", ("torchscript", "dynamo")),
                                             ("lraspp_mobilenet_v3_large", ("dynamo",))])
def test_mobile_segmenters_equal_pytorch_grad_cam(arch, exporters, tmp_path):
    """DeepLabV3 (argmax region of the most predicted class) through both exporters and LRASPP (a
    rectangle) through dynamo (its TorchScript export runs every method family above), random
    weights, aux heads off, 160 px. About 45 s and 25 s of CPU on top of the interpreter."""
    net = segmenter(arch, classes=4)
    for exporter in exporters:
        path = export(net, tmp_path / f"{arch}_{exporter}.onnx", exporter, size=SEG_SIZE)
        for line in segment_parity(net, path, SEGMENTER_LAYERS[arch], 4, arch.startswith("deeplab")):
            print(f"{arch}/{exporter}: {line}")
