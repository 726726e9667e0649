"""AttnLRP (onnxcam/graph/rules/lrp_attention.py): each rule against its closed form on a one-block
ViT built with onnx.helper, the composite chosen for attention graphs, and parity with lxt (the
authors' package) on random-init timm ViT-Tiny / DeiT-Tiny exports, with conservation block by block.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam.errors import OnnxCamError
from onnxcam.graph.rules.lrp import COMPOSITES, relevance_rules
from conftest import photo_paths, random_images
from nets import small_cnn

EPS = 1e-9   # the attnlrp composite's stabilizer (Composite.norm_epsilon and Rule("epsilon"))


def tiny_vit(seed: int = 0, mask: bool = False, biases: bool = True, fused: bool = False) -> onnx.ModelProto:
    """A one-block ViT on 8x8 images: 4x4 patch conv (6 channels, 4 tokens), position Add,
    LayerNorm, single-head attention (q, k, v, output projection), residual Add, LayerNorm,
    mean over tokens, dense head (10 classes). mask: a causal -inf mask before the Softmax.
    fused: the attention as one ONNX Attention op (opset 23), as the dynamo exporter writes it there."""
    rng = np.random.default_rng(seed)
    c, t = 6, 4

    def w(*shape, scale=0.5):
        return rng.normal(0, scale, shape).astype(np.float32)

    def b(n):
        return w(n, scale=0.2) if biases else np.zeros(n, np.float32)

    params = {"w_pe": w(c, 3, 4, 4, scale=0.3), "b_pe": b(c), "pos": w(1, t, c, scale=0.3),
              "g1": 1 + w(c, scale=0.2), "be1": b(c), "wq": w(c, c), "bq": b(c), "wk": w(c, c), "bk": b(c),
              "wv": w(c, c), "bv": b(c), "wo": w(c, c), "bo": b(c), "g2": 1 + w(c, scale=0.2), "be2": b(c),
              "wh": w(10, c), "bh": b(10), "flat_shape": np.array([0, c, t], np.int64),
              "scale": np.array(c ** -0.5, np.float32),
              "causal": np.triu(np.full((t, t), -np.inf, np.float32), 1)}
    nodes = [
        helper.make_node("Conv", ["x", "w_pe", "b_pe"], ["patches"], strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("Reshape", ["patches", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
        helper.make_node("Add", ["tokens", "pos"], ["x0"]),
        helper.make_node("LayerNormalization", ["x0", "g1", "be1"], ["n1"], axis=-1),
    ]
    for name in "qkv":
        nodes += [helper.make_node("MatMul", ["n1", f"w{name}"], [f"{name}_lin"]),
                  helper.make_node("Add", [f"{name}_lin", f"b{name}"], [name])]
    softmax_in = "masked" if mask else "scores"
    params["heads_axis"] = np.array([1], np.int64)
    params["token_axis"] = np.array([1], np.int64)
    if fused:
        nodes += [helper.make_node("Unsqueeze", [name, "heads_axis"], [f"{name}4"]) for name in "qkv"]
        nodes += [helper.make_node("Attention", ["q4", "k4", "v4"] + (["causal"] if mask else []), ["ctx4"],
                                   scale=float(c ** -0.5)),
                  helper.make_node("Squeeze", ["ctx4", "heads_axis"], ["ctx"])]
    else:
        nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
                  helper.make_node("MatMul", ["q", "kt"], ["qk"]),
                  helper.make_node("Mul", ["qk", "scale"], ["scores"])]
        if mask:
            nodes.append(helper.make_node("Add", ["scores", "causal"], ["masked"]))
        nodes += [helper.make_node("Softmax", [softmax_in], ["attn"], axis=-1),
                  helper.make_node("MatMul", ["attn", "v"], ["ctx"])]
    nodes += [helper.make_node("MatMul", ["ctx", "wo"], ["proj_lin"]),
              helper.make_node("Add", ["proj_lin", "bo"], ["proj"]),
              helper.make_node("Add", ["x0", "proj"], ["x1"]),
              helper.make_node("LayerNormalization", ["x1", "g2", "be2"], ["n2"], axis=-1),
              helper.make_node("ReduceMean", ["n2", "token_axis"], ["pooled"], keepdims=0),
              helper.make_node("Gemm", ["pooled", "wh", "bh"], ["logits"], transB=1)]
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    graph = helper.make_graph(nodes, "tiny_vit", [image],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23 if fused else 18)])
    model.ir_version = 10 if fused else 8
    onnx.checker.check_model(model)
    return model


def attnlrp_relevances(ex, x, names, target=None):
    """(activations, relevances) at any tensors of the canonical graph under the attnlrp composite,
    start = the target's logit."""
    def rules():
        return relevance_rules(COMPOSITES["attnlrp"], ex.model.first_linear, ex.box_bounds(), ex.model.conv_biases)
    _, _, acts, rel = ex.gradients(x, names, target, rules_name="lrp:attnlrp-test", rules=rules, start="logit")
    return ({k: v.astype(np.float64) for k, v in acts.items()}, {k: v.astype(np.float64) for k, v in rel.items()})


def _stab(z):
    return z + np.where(z >= 0, EPS, -EPS)


def _close(ours, expected, what):
    err = np.abs(ours - expected).max() / np.abs(expected).max()
    assert err < 1e-4, f"{what}: largest difference {err:.2e} of the largest value"


@pytest.mark.parametrize("mask", [False, True])
def test_each_rule_is_its_closed_form(mask):
    ex = onnxcam.Explainer(tiny_vit(mask=mask))
    ex.allow_nonfinite = mask   # the masked logits (-inf) are among the tensors read back here
    x = random_images(3, (3, 8, 8))
    soft_in = "masked" if mask else "scores"
    names = ["x1", "n2", "q", "kt", "qk", "scores", soft_in, "attn", "v", "ctx"]
    a, r = attnlrp_relevances(ex, x, list(dict.fromkeys(names)))
    assert all(np.isfinite(v).all() for v in r.values())
    # Softmax: R_x = x (R - y Σ R) along the softmax axis; masked logits (-inf) get 0
    logits = np.where(np.isinf(a[soft_in]), 0.0, a[soft_in])
    _close(r[soft_in], logits * (r["attn"] - a["attn"] * r["attn"].sum(-1, keepdims=True)), "Softmax")
    if mask:
        assert np.all(r[soft_in][np.isinf(a[soft_in])] == 0) and np.all(r["scores"][np.isinf(a[soft_in])] == 0)
    # a constant scale passes relevance unchanged
    _close(r["qk"], r["scores"], "scale Mul")
    # bilinear matmuls: ε over the contracted axis, half of each product's share to each factor
    s = r["ctx"] / _stab(a["ctx"])
    _close(r["attn"], 0.5 * a["attn"] * (s @ a["v"].transpose(0, 2, 1)), "attention @ v (attention side)")
    _close(r["v"], 0.5 * a["v"] * (a["attn"].transpose(0, 2, 1) @ s), "attention @ v (value side)")
    s = r["qk"] / _stab(a["qk"])
    _close(r["q"], 0.5 * a["q"] * (s @ a["kt"].transpose(0, 2, 1)), "q @ kᵀ (query side)")
    _close(r["kt"], 0.5 * a["kt"] * (a["q"].transpose(0, 2, 1) @ s), "q @ kᵀ (key side)")
    np.testing.assert_allclose(r["q"].sum((1, 2)) + r["kt"].sum((1, 2)), r["qk"].sum((1, 2)), rtol=1e-4)
    # LayerNorm with σ constant: ε-rule on the then-linear map; only its bias absorbs relevance
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in ex.model.proto.graph.initializer}
    g2, be2 = inits["g2"], inits["be2"]
    s = r["n2"] / _stab(a["n2"])
    t = s * g2
    sigma = np.sqrt(a["x1"].var(-1, keepdims=True) + 1e-5)
    _close(r["x1"], a["x1"] * (t - t.mean(-1, keepdims=True)) / sigma, "LayerNormalization")
    np.testing.assert_allclose(r["x1"].sum((1, 2)), (r["n2"] - be2 * s).sum((1, 2)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mask", [False, True])
def test_fused_attention_op_gets_the_same_relevance_as_its_parts(mask):
    """ONNX Attention (opset 23) recomputes its scores, softmax and products in the backward graph:
    the input relevance equals that of the same network written as MatMul, Softmax, MatMul."""
    x = random_images(3, (3, 8, 8))
    parts = onnxcam.Explainer(tiny_vit(mask=mask)).relevance(x, composite="attnlrp")["input"]
    fused = onnxcam.Explainer(tiny_vit(mask=mask, fused=True))
    ours = fused.relevance(x)["input"]    # and the default picks attnlrp for the Attention op
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, parts, rtol=1e-4, atol=1e-5 * np.abs(parts).max())


TIMM_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "timm").glob("*.onnx"))


@pytest.mark.parametrize("path", TIMM_FIXTURES, ids=[p.stem for p in TIMM_FIXTURES])
def test_lrp_and_relevancecam_on_every_timm_fixture(path):
    """ViT, DeiT (distillation token), Swin (windows), MobileViT (conv hybrid), both exporters and
    opset 23: lrp picks attnlrp and reaches the pixels; Relevance-CAM weighs the auto token grid's
    channels by their mean relevance over the patch tokens (class tokens dropped by the grid)."""
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(1), ex.preprocess)
    res = ex.explain(x, method="lrp")
    assert any("lrp (attnlrp)" in n for n in res.notes)
    assert np.isfinite(res.pixels["input"]).all() and np.abs(res.pixels["input"]).sum() > 0
    cam = ex.explain(x, method="relevancecam")
    layer = cam.layers[0]
    assert layer == ex.model.layer("auto").name
    w = cam.weights[layer]
    assert w.shape == (1, ex.model.layer(layer).shape[0]) and np.isfinite(w).all() and np.abs(w).sum() > 0


def test_exported_relevancecam_explainer_on_a_vit_equals_explain():
    """export-explainer's relevancecam takes the composite the graph needs, as explain does: on a
    ViT the standalone graph uses AttnLRP and its heatmap equals explain's map (float32 rounding)."""
    import onnxruntime as ort
    from onnxcam.deploy import build_explainer_model
    ex = onnxcam.Explainer(Path(__file__).parent / "fixtures" / "timm" / "vit_tiny_patch16_224_torchscript.onnx")
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    sess = ort.InferenceSession(build_explainer_model(ex, "relevancecam").SerializeToString(),
                                providers=["CPUExecutionProvider"])
    _, heat, cls = sess.run(None, {ex.model.input_name: x})
    res = ex.explain(x, method="relevancecam")
    np.testing.assert_allclose(heat, res.maps[ex.model.auto_layer.name], atol=1e-5)
    np.testing.assert_array_equal(cls, res.target)


def test_lrp_picks_attnlrp_on_attention_and_cnn_composites_name_it():
    vit = onnxcam.Explainer(tiny_vit())
    x = random_images(2, (3, 8, 8))
    res = vit.explain(x, method="lrp")
    assert any("lrp (attnlrp)" in n for n in res.notes)
    assert np.isfinite(res.pixels["input"]).all() and np.abs(res.pixels["input"]).sum() > 0
    np.testing.assert_array_equal(vit.relevance(x)["input"], vit.relevance(x, composite="attnlrp")["input"])
    with pytest.raises(OnnxCamError, match="attnlrp") as err:
        vit.explain(x, method="lrp", composite="epsilon-plus-flat")
    assert "\n" not in str(err.value)
    # Relevance-CAM too: on attention graphs its default composite is attnlrp (token layers of a
    # ViT are catalog layers once intake lists them; here the patch conv's output)
    cam = vit.explain(x, method="relevancecam", layers="patches")
    same = vit.explain(x, method="relevancecam", layers="patches", composite="attnlrp")
    np.testing.assert_array_equal(cam.weights["patches"], same.weights["patches"])
    assert np.isfinite(cam.weights["patches"]).all() and np.abs(cam.weights["patches"]).sum() > 0
    cnn = onnxcam.Explainer(small_cnn())
    res = cnn.explain(random_images(1, (3, 32, 32)), method="lrp")
    assert any("lrp (epsilon-plus-flat)" in n for n in res.notes)


def test_batch_one_reshape_that_adds_the_batch_axis_is_patched_to_run():
    """The dynamo exporter's attention reshapes [B*heads, d, T] to [1, heads, d, T]: copying the
    input's dim 0 there (3 = batch x heads) broke the model even image by image."""
    heads, d = 3, 16
    nodes = [helper.make_node("Reshape", ["x", "merged_shape"], ["merged"]),     # [3, 16]: batch x heads
             helper.make_node("Relu", ["merged"], ["act"]),
             helper.make_node("Reshape", ["act", "split_shape"], ["split"]),     # [1, 3, 16]
             helper.make_node("ReduceMean", ["split"], ["pooled"], axes=[2], keepdims=0),
             helper.make_node("Gemm", ["pooled", "w"], ["logits"], transB=1)]
    inits = [numpy_helper.from_array(np.array([heads, d], np.int64), "merged_shape"),
             numpy_helper.from_array(np.array([1, heads, d], np.int64), "split_shape"),
             numpy_helper.from_array(np.random.default_rng(0).normal(size=(5, heads)).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "batch_one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = random_images(2, (3, 4, 4))
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(2)])
    scores, _ = onnxcam.Explainer(model).forward(x)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


# ----- parity with lxt on timm exports (torch in a fresh process)

def _lxt_rules():
    """lxt's rule modules (lxt.efficient.rules, .patches: torch autograd Functions and module
    forwards). Imported without running lxt's package __init__, which loads its LLM patches and with
    them transformers; those two modules need torch only."""
    import importlib
    import importlib.util
    import sys
    import types
    if "lxt" not in sys.modules:
        spec = importlib.util.find_spec("lxt")
        if spec is None:
            raise ImportError("lxt is not installed: pip install -e '.[cpu,test]' -c constraints.txt")
        root = spec.submodule_search_locations[0]
        for name, path in (("lxt", root), ("lxt.efficient", f"{root}/efficient")):
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
    return importlib.import_module("lxt.efficient.rules"), importlib.import_module("lxt.efficient.patches")


def _lxt_attnlrp(model):
    """AttnLRP on a timm ViT the way lxt applies it to its transformers (lxt.efficient): LayerNorm's
    σ detached (patches.layer_norm_forward), GELU's and SiLU's identity rule
    (patches.non_linear_forward), and the gradient divided by 4 at q and k and by 2 at v before
    attention (patches.wrap_attention_forward: the uniform rule through both matmuls). Linear layers
    keep their gradient (ε-rule); the relevance is input x gradient."""
    import types

    import torch
    import torch.nn.functional as F
    rules, patches = _lxt_rules()

    def attention(self, x, attn_mask=None, is_causal=False):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = rules.divide_gradient(q, 4), rules.divide_gradient(k, 4), rules.divide_gradient(v, 2)
        x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, self.attn_dim)
        return self.proj_drop(self.proj(self.norm(x)))

    def window_attention(self, x, mask=None):
        """Swin's (timm WindowAttention): the same with its relative position bias and shift mask."""
        n, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k, v = rules.divide_gradient(q, 4), rules.divide_gradient(k, 4), rules.divide_gradient(v, 2)
        bias = self._get_rel_pos_bias()
        if mask is not None:
            windows = mask.shape[0]
            mask = mask.view(1, windows, 1, t, t).expand(n // windows, -1, self.num_heads, -1, -1)
            bias = bias + mask.reshape(-1, self.num_heads, t, t)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(n, t, -1)
        return self.proj_drop(self.proj(x))

    forwards = {"Attention": attention, "WindowAttention": window_attention}
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.forward = types.MethodType(patches.layer_norm_forward, module)
        elif isinstance(module, (torch.nn.GELU, torch.nn.SiLU)):
            # lxt's identity rule divides f(x) by x after calling f: an in-place f (timm's convs use
            # SiLU(inplace=True)) would have overwritten x with f(x), and the rule would be the gradient
            module.inplace = False
            module.original_forward = module.forward
            module.forward = types.MethodType(patches.non_linear_forward, module)
        elif type(module).__name__ in forwards:
            module.forward = types.MethodType(forwards[type(module).__name__], module)
    return model


def _timm_vit(arch: str, perturb: bool):
    """Random-init timm model in eval mode. timm initialises every Linear and LayerNorm bias to 0;
    perturb gives them (and the LayerNorm scales) random values, so the bias rules are exercised."""
    import timm
    import torch
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters() if perturb else ():
            if name.endswith("bias"):
                p.normal_(0.0, 0.05)
            elif "norm" in name and name.endswith("weight"):
                p.add_(torch.randn_like(p) * 0.2)
    return model


_SIDECAR = {"input_size": [224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255,
            "channel_order": "RGB", "layout": "NCHW", "resize": "stretch"}


def _export(model, path, exporter: str):
    """torch.onnx export at the model's input size (TorchScript with a dynamic batch, or dynamo at
    batch 1 as its default gives; "dynamo23": dynamo at opset 23, which writes attention as one
    Attention op) and the preprocessing sidecar."""
    import torch
    kw = {"dynamo": exporter.startswith("dynamo"), "opset_version": 23 if exporter == "dynamo23" else 18}
    if exporter == "torchscript":
        kw["dynamic_axes"] = {"input": {0: "N"}, "logits": {0: "N"}}
    with torch.no_grad():
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))[1:]
        torch.onnx.export(model, (torch.zeros(1, 3, *size),), str(path), input_names=["input"],
                          output_names=["logits"], **kw)
    (path.parent / f"{path.name}.json").write_text(json.dumps(_SIDECAR | {"input_size": list(size)}))
    return path


def _lxt_relevance(model, x, targets):
    """lxt's relevance at the input [N, 3, H, W] and Σ R at every LayerNorm input (the residual
    stream entering each block's two halves, then the final norm's), in execution order."""
    import torch
    seen = []

    def keep(module, args):
        args[0].retain_grad()
        seen.append(args[0])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    hooks = [m.register_forward_pre_hook(keep) for m in norms]
    xt = torch.from_numpy(x).requires_grad_()
    y = model(xt)
    y.gather(1, torch.as_tensor(targets)[:, None]).sum().backward()
    for h in hooks:
        h.remove()
    sums = [(t * t.grad).detach().double().reshape(len(x), -1).sum(1).numpy() for t in seen]
    return (xt * xt.grad).detach().numpy(), sums


def _stream_and_softmax(ex):
    """Names in the canonical graph of every LayerNormalization input (residual stream) and of
    every Softmax input and output, in graph order: exporter-independent block boundaries."""
    nodes = ex.model.proto.graph.node
    return ([n.input[0] for n in nodes if n.op_type == "LayerNormalization"],
            [(n.input[0], n.output[0]) for n in nodes if n.op_type == "Softmax"])


def _pearson(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.own_process
def test_vit_tiny_relevance_equals_lxt_block_by_block_and_cli(tmp_path, capsys):
    """TorchScript export of vit_tiny_patch16_224 with random biases: input relevance Pearson with
    lxt ≥ 0.9999 per image (measured 0.99999995; the issue asks 0.99), Σ R at every block boundary
    within 1e-4 of Σ|R| there of lxt's (measured 1e-6: float32 rounding in two runtimes' kernels),
    and `onnxcam explain --method lrp` choosing attnlrp by itself."""
    model = _timm_vit("vit_tiny_patch16_224", perturb=True)
    path = _export(model, tmp_path / "vit.onnx", "torchscript")
    ex = onnxcam.Explainer(path)
    photos = photo_paths(2)
    x = onnxcam.load_images(photos, ex.preprocess)
    targets = ex.forward(x)[0].argmax(1)
    stream, softmax = _stream_and_softmax(ex)
    assert len(stream) == 25 and len(softmax) == 12
    acts, rel = attnlrp_relevances(ex, x, [ex.model.input_name] + stream, targets.tolist())
    ref, ref_sums = _lxt_relevance(_lxt_attnlrp(model), x, targets)
    ours = rel[ex.model.input_name]
    for i in range(len(x)):
        r = _pearson(ours[i], ref[i])
        with capsys.disabled():
            print(f"vit_tiny torchscript image {i}: Pearson with lxt {r:.8f}, Σ R input {ours[i].sum():.6g} "
                  f"(lxt {ref[i].sum():.6g})")
        assert r >= 0.9999
    for name, theirs in zip(stream, ref_sums):
        mine = rel[name].reshape(len(x), -1).sum(1)
        size = np.abs(rel[name]).reshape(len(x), -1).sum(1)
        assert np.all(np.abs(mine - theirs) <= 1e-4 * size), (name, mine, theirs, size)
    # the CLI: lrp picks attnlrp on this graph
    args = ["explain", str(path), str(photos[0]), "--method", "lrp", "--out", str(tmp_path / "o"), "--json"]
    from onnxcam.cli import main
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "lrp (attnlrp)" in captured.err + captured.out
    assert (tmp_path / "o" / f"{photos[0].stem}_lrp_input.png").is_file()


@pytest.mark.own_process
def test_deit_tiny_dynamo_equals_lxt_and_conserves_block_by_block(tmp_path):
    """dynamo export (batch 1, as its default gives) of deit_tiny_patch16_224 with timm's init, where
    every Linear and LayerNorm bias is 0. Then AttnLRP's only non-conservative rule inside a block is
    the Softmax's (the uniform, ε, identity and σ-constant LayerNorm rules conserve when no bias
    takes a share), so at every block Σ R(input) − Σ R(output) must equal Σ R(softmax input) −
    Σ R(softmax output) within 1e-5 of Σ|R| at the block's output: the relevances are float32, each
    value a few ulp (~1e-7 relative) off after a block's dozen ops, and the ε = 1e-9 stabilizers
    change nothing above that (largest measured 3e-8). The Softmax's own share is far above the
    tolerance in some blocks (checked), so the test can fail. Input relevance Pearson with lxt ≥
    0.9999 as above."""
    model = _timm_vit("deit_tiny_patch16_224", perturb=False)
    path = _export(model, tmp_path / "deit.onnx", "dynamo")
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    targets = ex.forward(x)[0].argmax(1)
    stream, softmax = _stream_and_softmax(ex)
    assert len(stream) == 25 and len(softmax) == 12
    names = [ex.model.input_name] + stream + [t for pair in softmax for t in pair]
    _, rel = attnlrp_relevances(ex, x, list(dict.fromkeys(names)), targets.tolist())
    ref, _ = _lxt_relevance(_lxt_attnlrp(model), x, targets)
    for i in range(len(x)):
        r = _pearson(rel[ex.model.input_name][i], ref[i])
        print(f"deit_tiny dynamo image {i}: Pearson with lxt {r:.8f}")
        assert r >= 0.9999

    def total(name):
        return rel[name].reshape(len(x), -1).sum(1)
    largest_leak = 0.0
    for b, (soft_in, soft_out) in enumerate(softmax):
        block_in, block_out = stream[2 * b], stream[2 * b + 2]
        leak = total(soft_in) - total(soft_out)
        tol = 1e-5 * np.abs(rel[block_out]).reshape(len(x), -1).sum(1)
        gap = total(block_in) - total(block_out) - leak
        print(f"block {b}: Σ R in - out {total(block_in) - total(block_out)}, softmax {leak}, rest {gap} "
              f"(tolerance {tol})")
        assert np.all(np.abs(gap) <= tol)
        largest_leak = max(largest_leak, float((np.abs(leak) / tol).max()))
    assert largest_leak > 100
