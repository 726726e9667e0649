"""Score-CAM, HiResCAM and the SR map against their authors' computation, replicated here in torch.

- Score-CAM: haofanwang/Score-CAM, cam/scorecam.py (the official code of Wang et al.): upsample each
  channel of the layer with F.interpolate(bilinear, align_corners=False), skip channels whose
  upsampled map is constant, mask the image with the min-max normalized map, weight = softmax over
  classes of the masked image's logits at the predicted class, map = ReLU(Σ_k s_k U_k) at input
  resolution, then min-max. onnxcam's `scorecam` returns Σ_k s_k A_k at feature resolution (raw),
  which bilinear upsampling (linear) turns into the same Σ_k s_k U_k.
- HiResCAM: rachellea/hirescam, attn_analysis/cams.py (Draelos & Carin): the gradient of the
  one-hot-weighted output at the layer times the activation, summed over channels, no ReLU
  (`proposed_hirescam`); `gradcam_vanilla` there is Grad-CAM (for one 2-D image: channel weights =
  mean gradient). Torch's ReLU decisions take onnxruntime's (tests/test_autograd_parity.py), so
  the comparison is not at the mercy of a pre-activation within rounding of 0.
- SR map (Li et al., Image and Vision Computing 2019, as DESIGN.md §6 states it): step 1 is LRP
  pixel relevance with LRP-0 (bias in the denominator) on convolutions, z+ without bias on dense
  layers, winner-take-all max-pooling, ReLU/Dropout passing relevance unchanged, start = logit
  of the target times its one-hot; replicated layer by layer below on a small VGG-style net. Where
  the paper is silent onnxcam chooses (and this test pins): a zero LRP-0 denominator gives zero
  relevance (no ε), the z+ denominator gets 1e-9, |R| is scaled by its global maximum per image
  before the context-aware saliency, whose own choices are listed in onnxcam/saliency.py.

Figures for README: python tests/benchmarks/authors_parity.py
"""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from onnxcam.metrics.agreement import pearson
from onnxcam.methods.relevance import sr_from_relevance
from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
from onnxcam.graph.backward import SEED
from test_autograd_parity import match_layer, torch_gradients

import torch
import torch.nn.functional as F

pytestmark = pytest.mark.own_process   # a resnet18 export and its torch twin: freed when the child exits

ARCH, SIZE = "resnet18", 96
MODULES = ["layer2", "layer3", "layer4"]
PEARSON = 0.999                  # the bar; float32 runs of two runtimes reach ~1 - 1e-7


def export_resnet(tmp):
    from export_torchvision import build, export
    _, path = export(ARCH, tmp / f"{ARCH}.onnx", size=SIZE, seed=0, verify=False, randomize_bn=True)
    return build(ARCH, seed=0, randomize_bn=True), onnxcam.Explainer(path)


def module_outputs(net, x, modules):
    """Activations of the named torch modules for batch x (numpy)."""
    acts, named = {}, dict(net.named_modules())
    hooks = [named[m].register_forward_hook(lambda mod, i, o, m=m: acts.__setitem__(m, o.detach()))
             for m in modules]
    with torch.no_grad():
        logits = net(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return logits, acts


def official_scorecam(net, module, image):
    """(weights [C], Σ_k s_k U_k [H, W], final map [H, W]) for one image [1, 3, H, W], as
    haofanwang/Score-CAM cam/scorecam.py computes them (masked forwards batched here)."""
    logits, acts = module_outputs(net, image, [module])
    c = int(logits.argmax(1))
    up = F.interpolate(acts[module].transpose(0, 1), size=image.shape[2:], mode="bilinear",
                       align_corners=False)                      # [C, 1, H, W]
    lo, hi = up.amin(dim=(1, 2, 3)), up.amax(dim=(1, 2, 3))
    keep = torch.nonzero(hi != lo).flatten()
    weights = torch.zeros(up.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for chunk in keep.split(64):
            masks = (up[chunk] - lo[chunk, None, None, None]) / (hi - lo)[chunk, None, None, None]
            probs = F.softmax(net(torch.from_numpy(image) * masks), dim=1)
            weights[chunk] = probs[:, c].double()
    total = (weights[:, None, None] * up[:, 0].double()).sum(0)
    final = F.relu(total)
    final = (final - final.min()) / (final.max() - final.min())
    return weights.numpy(), total.numpy(), final.numpy()


def scorecam_figures(net, ex, x, modules=MODULES) -> list[dict]:
    _, all_acts = ex.forward(x, ex.layers)
    _, ref = module_outputs(net, x, modules)
    rows = []
    for m in modules:
        layer = match_layer(ex, all_acts, ref[m].numpy())
        res = ex.explain(x, "scorecam", layers=[layer.name])
        for i in range(len(x)):
            w, total, final = official_scorecam(net, m, x[i:i + 1])
            ours = F.interpolate(torch.from_numpy(res.raw[layer.name][i:i + 1, None]), size=x.shape[2:],
                                 mode="bilinear", align_corners=False)[0, 0].numpy()
            rows.append({"layer": m, "image": i, "weights": pearson(res.weights[layer.name][i], w),
                         "raw": pearson(ours, total), "map": pearson(res.maps[layer.name][i], final),
                         "map_max_abs": float(np.abs(res.maps[layer.name][i] - final).max()),
                         "skipped_equal": bool(np.array_equal(res.weights[layer.name][i] == 0, w == 0))})
    return rows


def hirescam_figures(net, ex, x) -> list[dict]:
    targets = np.array([3, 967])[:len(x)]
    seed = np.eye(1000, dtype=np.float32)[targets]
    _, _, onnx_acts, _ = ex.gradients(x, ex.layers, target=seed)
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    assert_same_run(gates, onnx_acts)
    with aligned_gates(gates) as flips:   # torch takes onnxruntime's gate decisions
        _, ref = torch_gradients(net, x, MODULES, seed)
    flips.check()
    rows = []
    for m in MODULES:
        layer = match_layer(ex, onnx_acts, ref[m][0])
        a, g = ref[m]
        authors = {"hirescam": (g * a).sum(axis=1),                                 # proposed_hirescam
                   "gradcam": (g.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1)}  # gradcam_vanilla
        for method, theirs in authors.items():
            res = ex.explain(x, method, layers=[layer.name], target=targets)
            for i in range(len(x)):
                ours = res.raw[layer.name][i]
                rows.append({"method": method, "layer": m, "image": i, "raw": pearson(ours, theirs[i]),
                             "max_rel": float(np.abs(ours - theirs[i]).max() / np.abs(theirs[i]).max()),
                             "flips": flips.total, "near_kinks": int(res.near_kinks[layer.name][i])})
    return rows


class SmallVGG(torch.nn.Sequential):
    """conv-ReLU-maxpool x2, then dense-ReLU-dropout-dense: the layer types the SR paper's VGG has."""

    def __init__(self):
        super().__init__(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                         torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                         torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 32), torch.nn.ReLU(),
                         torch.nn.Dropout(), torch.nn.Linear(32, 10))


def sr_relevance(net: SmallVGG, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pixel relevance of the SR map's step 1, layer by layer (DESIGN.md §6, Li et al. 2019)."""
    with torch.no_grad():
        inputs, h = [], torch.from_numpy(x)
        for layer in net:
            inputs.append(h)
            h = layer(h)
        r = torch.zeros_like(h)
        rows = torch.arange(len(x))
        r[rows, targets] = h[rows, targets]           # start: logit of the target, one-hot
        for layer, a in zip(reversed(net), reversed(inputs)):
            if isinstance(layer, torch.nn.Linear):      # z+, no bias, 1e-9 stabilizer
                wp = layer.weight.clamp(min=0)
                r = a * ((r / (a @ wp.T + 1e-9)) @ wp)
            elif isinstance(layer, torch.nn.Conv2d):    # LRP-0, bias in z, 0/0 -> 0
                z = layer(a)
                s = torch.where(z != 0, r / torch.where(z != 0, z, 1), 0)
                r = a * F.conv_transpose2d(s, layer.weight, padding=1)
            elif isinstance(layer, torch.nn.MaxPool2d):  # winner takes all
                _, idx = F.max_pool2d(a, 2, return_indices=True)
                r = F.max_unpool2d(r, idx, 2, output_size=a.shape[2:])
            elif isinstance(layer, torch.nn.Flatten):
                r = r.reshape(a.shape)
            # ReLU, Dropout (eval): relevance passes unchanged
    return r.numpy()


def srmap_figures(tmp, images: int = 2) -> list[dict]:
    from _common import torch_export
    torch.manual_seed(0)
    net = SmallVGG().eval()
    path = torch_export(net, torch.zeros(1, 3, 32, 32), tmp / "small_vgg.onnx")
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(images), ex.preprocess)
    res = ex.explain(x, "srmap")
    theirs = sr_relevance(net, x, res.target)
    maps = sr_from_relevance(theirs)
    return [{"image": i, "relevance": pearson(res.pixels["input"][i], theirs[i]),
             "max_rel": float(np.abs(res.pixels["input"][i] - theirs[i]).max() / np.abs(theirs[i]).max()),
             "map": pearson(res.raw["input"][i], maps[i])} for i in range(len(x))]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    net, ex = export_resnet(tmp_path_factory.mktemp("authors"))
    return net, ex, onnxcam.load_images(photo_paths(2), ex.preprocess)


def test_scorecam_equals_the_official_code(resnet):
    net, ex, x = resnet
    # one image, 384 channels: torch takes ~40 ms per masked forward here (layer4 adds 512 more,
    # the benchmark script runs it)
    for row in scorecam_figures(net, ex, x[:1], ["layer2", "layer3"]):
        assert row["skipped_equal"], row           # the same constant channels skipped
        assert min(row["weights"], row["raw"], row["map"]) >= PEARSON, row


def test_hirescam_and_gradcam_equal_the_hirescam_authors_code(resnet):
    for row in hirescam_figures(*resnet):
        assert row["raw"] >= PEARSON, row
        assert row["max_rel"] <= 1e-4, row   # the gradients' own guarantee (test_autograd_parity.py)


def test_srmap_relevance_follows_the_paper(tmp_path):
    for row in srmap_figures(tmp_path, images=1):  # context-aware saliency: ~4 s per map
        assert row["relevance"] >= PEARSON and row["map"] >= PEARSON, row
