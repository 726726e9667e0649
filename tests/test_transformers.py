"""Vision transformers and hybrids from the .onnx file (issue 16): timm ViT, DeiT (distillation
token), Swin ([N, H, W, C] windows) and MobileViT, exported by both PyTorch exporters, random init.

The models are the shrunk fixtures of converters/export_timm.py (tests/fixtures/timm, NOTE.md
there); the torch twin is rebuilt from the same seed and overrides. Tensors are matched by value:
the torch module's output is found among the ONNX graph's tensors holding the same numbers, so no
test knows either exporter's names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxcam
from conftest import photo_paths

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "timm"
EXPORTERS = ["torchscript", "dynamo"]
ARCHS = ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "swin_tiny_patch4_window7_224",
         "mobilevit_xxs"]
# three depths per architecture (timm module paths), the last one next to the head
BLOCKS = {
    "vit_tiny_patch16_224": ["blocks.0", "blocks.1", "blocks.2"],
    "deit_tiny_distilled_patch16_224": ["blocks.0", "blocks.1", "blocks.2"],
    "swin_tiny_patch4_window7_224": ["layers.0", "layers.2", "layers.3"],
    "mobilevit_xxs": ["stages.2", "stages.3", "stages.4"],
}


def fixture(arch: str, exporter: str) -> Path:
    return FIXTURES / f"{arch}_{exporter}.onnx"


def torch_twin(arch: str):
    from export_timm import FIXTURES as SHRUNK, build
    return build(arch, seed=0, **SHRUNK[arch])


def photos(ex, n: int = 2) -> np.ndarray:
    return onnxcam.load_images(photo_paths(n), ex.preprocess)


def tensor_values(model: onnx.ModelProto, x: np.ndarray, input_name: str, shape=None,
                  names=None) -> dict[str, np.ndarray]:
    """The named tensors, or every tensor of the graph with this static shape but the batch, by a plain run."""
    from onnxcam.intake.catalog import tensor_shapes
    import onnxruntime as ort
    if names is None:
        names = [k for k, v in tensor_shapes(model).items() if len(v) == len(shape)
                 and tuple(v[1:]) == tuple(shape[1:]) and k not in {t.name for t in model.graph.initializer}]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(None, {input_name: x})))


def match(values: dict, activation: np.ndarray) -> str:
    """The first graph tensor (in graph order) holding this torch activation."""
    scale = np.abs(activation).max()
    close = [k for k, v in values.items() if v.shape == activation.shape
             and np.abs(v - activation).max() <= 1e-4 * max(scale, 1e-6)]
    assert close, f"no ONNX tensor holds the torch activation of shape {activation.shape}"
    return close[0]


def pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def check_gradients_equal_autograd_at_three_blocks(arch, net):
    """dS/dA of the token tensors (or, in MobileViT, the feature maps behind its transformer
    blocks) equals autograd's, both exporters, a one-hot and a weighted seed.

    No ReLU on these paths (GELU, SiLU, softmax are smooth), so the two sides differ by float32
    rounding only: the backward repeats the forward's sums (C, T and 4C terms) on transposed
    weights, each within a few ulps relative to its largest terms, so 1e-4 of the largest
    gradient (~800 ulps) is the bound, as in test_autograd_parity.py."""
    from test_autograd_parity import torch_gradients
    for exporter in EXPORTERS:
        ex = onnxcam.Explainer(fixture(arch, exporter))
        x = photos(ex)
        k = ex.model.num_classes
        seed = np.zeros((2, k), np.float32)
        seed[0, 7] = 1.0
        seed[1] = np.random.default_rng(0).normal(size=k)
        logits, ref = torch_gradients(net, x, BLOCKS[arch], seed)
        names = []
        for m in BLOCKS[arch]:
            a = ref[m][0]
            names.append(match(tensor_values(ex.model.proto, x, ex.model.input_name, a.shape), a))
        scores, _, acts, grads = ex.gradients(x, names, target=seed)
        np.testing.assert_allclose(scores, logits, rtol=1e-3, atol=1e-4 * np.abs(logits).max())
        for m, name in zip(BLOCKS[arch], names):
            g_ref, g = ref[m][1], grads[name]
            if g.shape != g_ref.shape:   # a catalog layer in NHWC (Swin's stages) comes back as NCHW
                g = g.transpose(0, 2, 3, 1)
            assert np.abs(g_ref).max() > 0
            err = np.abs(g - g_ref).max() / np.abs(g_ref).max()
            r = pearson(g, g_ref)
            print(f"{arch}/{exporter} {m} ({name}, {g_ref.shape}): Pearson {r:.7f}, max rel diff {err:.2e}")
            assert err <= 1e-4 and r >= 0.99999, f"{arch}/{exporter} {m}: Pearson {r}, max rel diff {err:.2e}"


# ----- token grids as layers (onnxcam/intake/tokens.py)

GRIDS = {   # (extra tokens, h, w, C) of the auto layer
    "vit_tiny_patch16_224": (1, 14, 14, 96),
    "deit_tiny_distilled_patch16_224": (2, 14, 14, 96),
    "swin_tiny_patch4_window7_224": (0, 7, 7, 128),
}


def plain_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("arch", list(GRIDS))
def test_token_grids_are_layers_and_auto_is_the_last_attention_input(arch, exporter):
    """Token tensors are listed as [C, h, w] grids (extra tokens dropped), the rebuilt graph
    computes the exported logits, the grid holds the patch tokens row by row, and `auto` is
    the last block's norm1 output for class-token heads, the input of the final norm for Swin."""
    from onnxcam.intake.tokens import GRID_SUFFIX
    path = fixture(arch, exporter)
    ex = onnxcam.Explainer(path)
    extra, h, w, c = GRIDS[arch]
    auto = ex.model.auto_layer
    assert auto.shape == (c, h, w) and auto.layout == "NCHW" and auto.name.endswith(GRID_SUFFIX)
    grids = [layer for layer in ex.layers if layer.name.endswith(GRID_SUFFIX)]
    assert len(grids) >= 8
    x = photos(ex)
    scores, acts = ex.forward(x, [auto.name])
    np.testing.assert_allclose(scores, plain_logits(path, x), rtol=1e-5, atol=1e-6)
    tokens = auto.name[:-len(GRID_SUFFIX)]
    raw = tensor_values(ex.model.proto, x, ex.model.input_name, names=[tokens])[tokens]
    assert raw.shape == (len(x), extra + h * w, c)
    expected = raw[:, extra:].reshape(len(x), h, w, c).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(acts[auto.name], expected)
    op = next(n for n in ex.model.proto.graph.node if n.output[0] == tokens).op_type
    if arch.startswith("swin"):
        assert op == "Add"                                 # the last block's output
    else:
        assert op == "LayerNormalization"                  # blocks[-1].norm1
        last = max((layer for layer in grids if layer.op == "LayerNormalization"), key=lambda l: l.depth)
        assert auto.depth < last.depth                     # not the final norm: its patch tokens have no gradient


def test_token_grid_names_an_unknown_layer_helpfully():
    ex = onnxcam.Explainer(fixture("vit_tiny_patch16_224", "torchscript"))
    with pytest.raises(onnxcam.OnnxCamError, match="close matches: .*/grid"):
        ex.model.layer("/blocks/blocks.2/norm1/LayerNormalization_output_0")


# ----- every CAM method on them

CAM_METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigengradcam", "scorecam",
               "eigencam"]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_cam_method_at_the_auto_layer(arch, exporter):
    """Each method gives a finite map at the input size that is not constant, on one photo
    (Score-CAM on its 16 most varied channels, to stay cheap)."""
    ex = onnxcam.Explainer(fixture(arch, exporter))
    x = photos(ex, 1)
    for method in CAM_METHODS:
        options = {"top_k": 16} if method == "scorecam" else {}
        res = ex.explain(x, method=method, **options)
        m = res.maps[res.layers[0]][0]
        assert m.shape == ex.model.image_shape[1:], method
        assert np.all(np.isfinite(m)) and np.ptp(m) > 0, f"{arch}/{exporter} {method}: constant or non-finite map"


# ----- parity with pytorch-grad-cam and its reshape_transform

def pgc_layer_and_transform(net, arch: str):
    """pytorch-grad-cam's target layer and reshape_transform as its tutorials write them for the layer
    onnxcam picks as `auto` (ViT/DeiT: blocks[-1].norm1 with the extra tokens dropped; Swin: the
    last block's [N, H, W, C] output; MobileViT: its last conv, no transform)."""
    if arch.startswith(("vit", "deit")):
        extra, h, w, _ = GRIDS[arch]

        def tokens(t):
            return t[:, extra:, :].reshape(t.size(0), h, w, t.size(2)).transpose(2, 3).transpose(1, 2)
        return net.blocks[-1].norm1, tokens
    if arch.startswith("swin"):
        return net.layers[-1].blocks[-1], lambda t: t.permute(0, 3, 1, 2)
    return net.final_conv, None


def check_gradcam_equals_pytorch_grad_cam_with_reshape_transform(arch, net):
    """onnxcam's Grad-CAM at `auto` against pytorch-grad-cam's GradCAM on the same weights, both
    exporters, two photos: Pearson >= 0.999 of the raw maps (feature resolution) and of the final
    maps, which differ by float32 rounding only (no ReLU on the path: see the autograd test)."""
    import torch
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer, transform = pgc_layer_and_transform(net, arch)
    for exporter in EXPORTERS:
        ex = onnxcam.Explainer(fixture(arch, exporter))
        x = photos(ex)
        res = ex.explain(x, method="gradcam")
        auto = res.layers[0]
        cam = pgc.GradCAM(model=net, target_layers=[layer], reshape_transform=transform)
        targets = [ClassifierOutputTarget(int(t)) for t in res.target]
        xt = torch.from_numpy(x)
        maps = cam(input_tensor=xt, targets=targets)
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(xt, layer, targets, acts, grads, False)
        for i in range(len(x)):
            r_raw = pearson(res.raw[auto][i], raw[i])
            r_map = pearson(res.maps[auto][i], maps[i])
            diff = np.abs(res.raw[auto][i] - raw[i]).max() / np.abs(raw[i]).max()
            print(f"{arch}/{exporter} image {i} at {auto}: Pearson raw {r_raw:.6f}, map {r_map:.6f}, "
                  f"max rel diff raw {diff:.2e}")
            assert r_raw >= 0.999 and r_map >= 0.999, f"{arch}/{exporter} image {i}: {r_raw}, {r_map}"


@pytest.mark.own_process
@pytest.mark.parametrize("arch", ARCHS)
def test_parity_with_autograd_and_pytorch_grad_cam(arch):
    """One process per architecture (torch's import is most of the cost): gradients at three blocks
    = autograd, then Grad-CAM at `auto` = pytorch-grad-cam with its reshape_transform."""
    net = torch_twin(arch)
    check_gradients_equal_autograd_at_three_blocks(arch, net)
    check_gradcam_equals_pytorch_grad_cam_with_reshape_transform(arch, net)


# ----- command line

@pytest.mark.parametrize("arch", ["deit_tiny_distilled_patch16_224", "swin_tiny_patch4_window7_224"])
def test_cli_lists_token_layers_and_explains_with_gradcam_and_scorecam(arch, tmp_path, capsys):
    """`onnxcam layers` marks the token grid `auto` picks; `onnxcam explain vit.onnx photo.jpg
    --method gradcam,scorecam` writes both overlays and a montage from the dynamo export (weights in
    external data, preprocessing from the sidecar)."""
    import json
    from onnxcam.cli import main
    model = str(fixture(arch, "dynamo"))
    assert main(["layers", model, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    auto = next(layer for layer in listed if layer["auto"])
    assert auto["name"].endswith("/grid") and auto["shape"][1:] in ([14, 14], [7, 7])
    rc = main(["explain", model, str(photo_paths(1)[0]), "--method", "gradcam,scorecam", "--top-k", "8",
               "--out", str(tmp_path), "--json"])
    assert rc == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["method"] for r in runs] == ["gradcam", "scorecam"]
    assert all(r["layers"] == [auto["name"]] for r in runs)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 3 and any("montage" in p for p in pngs), pngs


@pytest.mark.own_process
def test_fused_attention_and_gelu_ops_of_opset23_equal_autograd_and_pytorch_grad_cam():
    """From opset 23 the dynamo exporter writes one Attention op per block and Gelu ops: gradients
    through them equal autograd at both blocks' outputs, `auto` is still blocks[-1].norm1, and
    Grad-CAM there equals pytorch-grad-cam's (the bounds of the tests above)."""
    import torch
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from export_timm import FUSED, build
    from test_autograd_parity import torch_gradients
    arch, overrides, opset = FUSED
    path = fixture(arch, f"dynamo_opset{opset}")
    assert {"Attention", "Gelu"} <= {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    net = build(arch, seed=0, **overrides)
    ex = onnxcam.Explainer(path)
    x = photos(ex)
    seed = np.zeros((2, ex.model.num_classes), np.float32)
    seed[:, 3] = 1.0
    blocks = ["blocks.0", "blocks.1"]
    logits, ref = torch_gradients(net, x, blocks, seed)
    names = [match(tensor_values(ex.model.proto, x, ex.model.input_name, ref[m][0].shape), ref[m][0]) for m in blocks]
    _, _, _, grads = ex.gradients(x, names, target=seed)
    for m, name in zip(blocks, names):
        g_ref = ref[m][1]
        err = np.abs(grads[name] - g_ref).max() / np.abs(g_ref).max()
        print(f"opset {opset} {m}: Pearson {pearson(grads[name], g_ref):.7f}, max rel diff {err:.2e}")
        assert err <= 1e-4
    res = ex.explain(x, method="gradcam")
    cam = pgc.GradCAM(model=net, target_layers=[net.blocks[-1].norm1],
                      reshape_transform=pgc_layer_and_transform(net, arch)[1])
    maps = cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(int(t)) for t in res.target])
    for i in range(len(x)):
        r = pearson(res.maps[res.layers[0]][i], maps[i])
        print(f"opset {opset} Grad-CAM image {i}: Pearson {r:.6f}")
        assert r >= 0.999
