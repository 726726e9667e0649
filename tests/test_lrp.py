"""LRP rules against closed-form numpy replicas, conservation, the Relevance-CAM closed form, and
relevance on the real models."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam import conservation
from onnxcam.graph.rules.lrp import Composite, Rule, relevance_rules
from conftest import LITE0, PADDLE_CLS, photo_paths, random_images
from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
from gradcheck import build, evaluator, with_backward
from nets import small_cnn

R = np.random.default_rng(7)


# ---------- closed-form replicas on dense matrices -------------------------------------------------
def conv_matrix(w, size, pad):
    """The Conv (stride 1) as a dense matrix [out_flat, in_flat], built on the basis."""
    c_out, c_in, k, _ = w.shape
    out = size + 2 * pad - k + 1
    m = np.zeros((c_out * out * out, c_in * size * size))
    for j in range(c_in * size * size):
        e = np.zeros(c_in * size * size)
        e[j] = 1
        x = np.pad(e.reshape(c_in, size, size), ((0, 0), (pad, pad), (pad, pad)))
        y = np.zeros((c_out, out, out))
        for o in range(c_out):
            for a in range(out):
                for b in range(out):
                    y[o, a, b] = np.sum(w[o] * x[:, a:a + k, b:b + k])
        m[:, j] = y.ravel()
    return m, out


def stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def replica(rule: Rule, x, m, b, r, mp_fn, low=None, high=None):
    """R_in for y = M x + b, every rule written out with dense matrices (Zennit's formulas)."""
    pos, neg = lambda a: np.maximum(a, 0), lambda a: np.minimum(a, 0)  # noqa: E731
    mp, mn = pos(m), neg(m)
    xp, xn = pos(x), neg(x)
    e = 0.0 if rule.name == "zero" else rule.epsilon
    if rule.name in ("epsilon", "zero"):
        z = m @ x + b
        s = r / stab(z, e) if e else np.where(z == 0, 0, r / np.where(z == 0, 1, z))
        return x * (m.T @ s)
    if rule.name == "zplus":
        z = mp @ xp + pos(b) + mn @ xn
        s = r / stab(z, e)
        return xp * (mp.T @ s) + xn * (mn.T @ s)
    if rule.name == "alphabeta":
        za = mp @ xp + pos(b) + mn @ xn
        zb = mn @ xp + neg(b) + mp @ xn
        sa, sb = r / stab(za, e), r / stab(zb, e)
        return rule.alpha * (xp * (mp.T @ sa) + xn * (mn.T @ sa)) - rule.beta * (xp * (mn.T @ sb) + xn * (mp.T @ sb))
    if rule.name == "gamma":
        g = rule.gamma
        rp, rn = m + g * mp, m + g * mn
        y = m @ x + b
        zu = rp @ xp + b + g * pos(b) + rn @ xn
        zd = rn @ xp + b + g * neg(b) + rp @ xn
        su, sd = (y > 0) * r / stab(zu, e), (y < 0) * r / stab(zd, e)
        return xp * (rp.T @ su) + xn * (rn.T @ su) + xp * (rn.T @ sd) + xn * (rp.T @ sd)
    if rule.name == "zbox":
        z = m @ x + b - (mp @ low + pos(b)) - (mn @ high + neg(b))
        s = r / stab(z, e)
        return x * (m.T @ s) - low * (mp.T @ s) - high * (mn.T @ s)
    if rule.name == "flat":
        ones_m = (m != 0).astype(float) if mp_fn is None else mp_fn
        s = r / stab(ones_m @ np.ones_like(x), e)
        return ones_m.T @ s
    if rule.name == "wsquare":
        s = r / stab((m ** 2) @ np.ones_like(x) + b ** 2, e)
        return (m ** 2).T @ s
    raise ValueError(rule.name)


RULES = [Rule("zero"), Rule("epsilon", epsilon=0.1), Rule("zplus"), Rule("alphabeta"),
         Rule("gamma"), Rule("zbox"), Rule("flat"), Rule("wsquare")]


def lrp_graph_run(nodes, x, consts, rule, r, bounds=None):
    model = build(nodes, {"x": x}, consts, "y", np.float64)
    rules = relevance_rules(Composite("one", rule), first_linear=None, bounds=bounds)
    back = with_backward(model, "y", ["x"], rules)
    return evaluator(back).run(None, {"x": x, "seed": r})[0]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_conv_rule_equals_closed_form(rule):
    size, pad = 5, 1
    w = R.normal(size=(3, 2, 3, 3))
    b = R.normal(size=3) * 0.3
    x = R.normal(size=(1, 2, size, size))
    m, out = conv_matrix(w, size, pad)
    bias = np.repeat(b, out * out)
    r = R.normal(size=(1, 3, out, out))
    low, high = np.full(2, -2.0), np.full(2, 2.5)
    ones_m, _ = conv_matrix(np.ones_like(w), size, pad)
    want = replica(rule, x.ravel(), m, bias, r.ravel(), ones_m,
                   np.repeat(low, size * size), np.repeat(high, size * size))
    got = lrp_graph_run([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[pad] * 4)], x,
                        {"w": w, "b": b}, rule, r, bounds=(low, high))
    np.testing.assert_allclose(got.ravel(), want, atol=1e-9, rtol=1e-7)  # float64: measured 3e-12


@pytest.mark.parametrize("rule", [r for r in RULES if r.name != "zbox"], ids=lambda r: r.name)
def test_gemm_rule_equals_closed_form(rule):
    """(z^B is the first-convolution rule: its bounds are per image channel.)"""
    w = R.normal(size=(4, 6))
    b = R.normal(size=4) * 0.3
    x = R.normal(size=(1, 6))
    r = R.normal(size=(1, 4))
    low, high = np.full(6, -2.0), np.full(6, 2.5)
    want = replica(rule, x.ravel(), w, b, r.ravel(), np.ones_like(w), low, high)
    bounds = (low, high)
    got = lrp_graph_run([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], x,
                        {"w": w, "b": b}, rule, r, bounds=bounds)
    np.testing.assert_allclose(got.ravel(), want, atol=1e-9, rtol=1e-7)  # float64: measured 3e-12


# ---------- conservation ------------------------------------------------------------------------------
def bias_free_resnet(classes=6, seed=0):
    """conv-relu-maxpool, one residual block (conv-relu-conv + skip, Add, ReLU), GAP, Gemm; no biases."""
    rng = np.random.default_rng(seed)
    w = {n: numpy_helper.from_array(rng.normal(0, 0.4, s).astype(np.float32), n) for n, s in
         [("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (8, 8, 3, 3)), ("wf", (classes, 8))]}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1] * 4),
             helper.make_node("Add", ["c3", "p1"], ["s"]),
             helper.make_node("Relu", ["s"], ["block"]),
             helper.make_node("GlobalAveragePool", ["block"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "resnetish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              list(w.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_zplus_zbox_wta_and_add_conserve_relevance_exactly():
    ex = onnxcam.Explainer(bias_free_resnet(), preprocess={"mean": [0.5] * 3, "std": [0.25] * 3})
    comp = Composite("conservative", Rule("zplus", epsilon=1e-12), first=Rule("zbox", epsilon=1e-12),
                     norm_epsilon=1e-12)
    x = random_images(3, (3, 16, 16), seed=2)
    layers = ["input", "r1", "p1", "block"]   # cuts of the graph (r2 sees only the residual branch)
    scores, targets, _, rel = ex.relevance_run(x, layers, comp, None, "logit")
    start = scores[np.arange(3), targets]
    for name in layers:
        np.testing.assert_allclose(rel[name].sum(axis=(1, 2, 3)), start, rtol=1e-5, err_msg=name)


def test_conserved_fraction_is_one_without_biases_and_warns_where_large_biases_absorb_it():
    """Result.conservation is Σ R / start. On a bias-free ReLU net under LRP-0 (ε -> 1e-9, z-rule
    on pooling and Add) every cut keeps all of it: 1 within float32 rounding (each of the ~6
    steps rounds every term to 2^-24 and sums up to 2048 terms; measured <= 1.3e-7, asserted
    1e-5, while a bias that took a share would show at 1e-3 and more). A large conv bias in the z+
    denominator absorbs most of it: a warning names the stretch of the graph that lost it."""
    ex = onnxcam.Explainer(bias_free_resnet(), preprocess={"mean": [0.5] * 3, "std": [0.25] * 3})
    assert conservation.cut_layers(ex.model) == ["c1", "r1", "p1", "s", "block"]   # not c2, r2, c3: bypassed
    x = random_images(3, (3, 16, 16), seed=2)
    lrp0 = Composite("lrp-0", Rule("epsilon", epsilon=1e-9), norm_epsilon=1e-9)
    res = ex.explain(x, method="lrp", composite=lrp0)
    assert list(res.conservation) == ["block", "s", "p1", "r1", "c1", "input"]   # from the score down
    for layer, kept in res.conservation.items():
        np.testing.assert_allclose(kept, 1.0, rtol=1e-5, err_msg=layer)
    note = [n for n in res.notes if n.startswith("lrp (lrp-0)")]
    assert len(note) == 1 and "WARNING" not in note[0]
    np.testing.assert_allclose(res.raw["input"].sum(axis=(1, 2)), res.logits[np.arange(3), res.target], rtol=1e-5)

    model = small_cnn()
    b2 = next(t for t in model.graph.initializer if t.name == "b2")
    b2.CopyFrom(numpy_helper.from_array(np.full(16, 30.0, np.float32), "b2"))
    res = onnxcam.Explainer(model).explain(random_images(2, (3, 32, 32)), method="lrp")
    kept = res.conservation
    np.testing.assert_allclose(kept["conv2"], kept["feat"])     # a ReLU passes relevance on
    assert np.all(kept["input"] < 0.5) and np.all(kept["conv2"] > 0.9)
    (note,) = [n for n in res.notes if n.startswith("lrp (epsilon-plus-flat)")]
    assert "WARNING: only 0.4" in note and "most of it between conv2 and pool1" in note


def test_conservation_note_names_where_relevance_is_lost_or_created():
    """The note's decisions on given fractions (medians over images): within [0.5, 2] and under
    10x in magnitude no warning; below 0.5 the stretch with the smallest ratio; relevance of
    both signs beyond 10x the start (ε-rule) is named by the stretch where Σ|R| grew most."""
    order = ["head", "mid", "input"]
    a = np.array

    def note(signed, magnitude=None):
        kept = {k: a(v) for k, v in zip(order, signed)}
        mags = {k: a(v) for k, v in zip(order, magnitude or signed)}
        (line,) = conservation.notes("lrp", "c", kept, mags, order)
        return line
    assert "WARNING" not in note([[1.0, 1.0], [0.8, 0.9], [0.6, 0.7]])
    assert "images 0.6 to 0.7" in note([[1.0, 1.0], [0.8, 0.9], [0.6, 0.7]])
    low = note([[0.9], [0.09], [0.045]])
    assert "WARNING: only 0.045 " in low and "between head and mid (x0.1)" in low
    made = note([[1.0], [0.9], [0.95]], [[1.0], [3.0], [60.0]])
    assert "WARNING: the input's relevance is 60 times the start in magnitude" in made and "between mid and input (x20)" in made
    assert "WARNING" not in note([[1.0], [1.0], [1.0]], [[1.0], [2.0], [9.0]])
    assert "start relevance is 0" in note([[np.nan], [np.nan], [np.nan]])


def test_signed_maps_and_pixels_are_drawn_from_the_percentile_scale():
    """0 -> the colormap's centre (white), ±p99.5 of |R| -> its ends (red / blue), beyond clipped;
    gamma keeps the sign; an all-zero map stays white; the raw values are not touched.
    R = -60..140 on 201 pixels: numpy's 99.5th percentile of |R| sits at sorted index
    0.995·200 = 199 exactly, |R| = 139, one below the maximum."""
    from onnxcam.postprocess import colorize, normalize, pixels_to_rgb, signed_scale
    raw = (np.arange(201, dtype=np.float64) - 60).reshape(1, 3, 67)
    before = raw.copy()
    v = signed_scale(raw).ravel()
    np.testing.assert_array_equal(raw, before)   # drawing never changes the relevance itself
    at = {int(r): k for k, r in enumerate(raw.ravel())}
    assert v[at[0]] == 0 and v[at[139]] == 1 and v[at[140]] == 1            # 140 is clipped
    assert v[at[-60]] == pytest.approx(-60 / 139) and v[at[70]] == pytest.approx(70 / 139)
    assert signed_scale(-raw).ravel()[at[139]] == -1
    assert signed_scale(raw, gamma=0.5).ravel()[at[-60]] == pytest.approx(-(60 / 139) ** 0.5)
    heat = normalize(raw, (3, 67), "signed")
    rgb = colorize(heat[0], diverging=True).reshape(-1, 3)
    assert tuple(rgb[at[0]]) == (255, 255, 255) and tuple(rgb[at[139]]) == (255, 0, 0)
    assert tuple(colorize(normalize(-raw, (3, 67), "signed")[0], diverging=True).reshape(-1, 3)[at[139]]) == (0, 0, 255)
    assert np.all(normalize(np.zeros((1, 4, 4)), (4, 4), "signed") == 0.5)
    pixels = np.concatenate([raw, np.zeros_like(raw), -np.zeros_like(raw)])   # [C=3, H, W], Σ_c = the map
    np.testing.assert_array_equal(pixels_to_rgb(pixels, diverging=True).reshape(-1, 3), rgb)


def test_default_lrp_on_the_bundled_model_is_visible_and_says_what_it_lost(tmp_path, capsys):
    """Issue 12: EpsilonPlusFlat kept ~0.1% of the logit, its map was near white (scaled by max|R|:
    7% of the pixels 10% away from the centre) and its pixel image flat grey (127-130, std 0.2).
    Now the pixel image spans the colormap and the map tints twice as many pixels (measured
    18.7%), and the JSON carries the conserved fraction per layer with the warning in the notes."""
    import json
    import cv2
    from onnxcam.cli import main
    photo = next(p for p in photo_paths() if p.stem == "chelsea")
    assert main(["explain", str(LITE0), str(photo), "--method", "lrp", "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    pixels = cv2.imread(str(tmp_path / "chelsea_lrp_input_pixels.png"))
    # drawn on the photo: resized from the model's 224 px, so the colormap's ends are met to within
    # the interpolation's blending of neighbouring pixels, not exactly
    assert pixels.std() > 15 and pixels.min() <= 8 and pixels.max() >= 247, pixels.std()   # measured 27.4
    assert (tmp_path / "chelsea_lrp_input.png").exists()
    kept = summary["conservation"]
    assert list(kept)[-1] == "input" and len(kept) == 6
    assert 0 < kept["input"][0] < 0.01                    # measured 0.00055
    assert kept["/_swish_1/Clip_output_0"][0] == pytest.approx(1.0, abs=0.05)   # the head keeps ~all
    assert any(n.startswith("lrp (epsilon-plus-flat): relevance kept") and "WARNING: only" in n
               for n in summary["notes"])
    npz = np.load(tmp_path / "chelsea_lrp.npz")
    assert np.mean(np.abs(2 * npz["map_0"] - 1) > 0.1) > 0.15
    assert main(["explain", str(LITE0), str(photo), "--method", "lrp", "--out", str(tmp_path / "text")]) == 0
    assert "\n# lrp (epsilon-plus-flat): relevance kept, Σ R / start: " in capsys.readouterr().out   # said, not only in JSON
    assert npz["raw_0"].sum() == pytest.approx(kept["input"][0] * npz["logits"][npz["target"]], rel=1e-4)


def test_relevance_cam_recipe_conserves_the_contrastive_start():
    k = 6
    ex = onnxcam.Explainer(bias_free_resnet(k), preprocess={"mean": [0.5] * 3, "std": [0.25] * 3})
    x = random_images(2, (3, 16, 16), seed=4)
    _, _, _, rel = ex.relevance_run(x, ["block", "p1", "r1"], "relevance-cam", 2, "contrastive")
    for name, r in rel.items():
        np.testing.assert_allclose(r.sum(axis=(1, 2, 3)), 1 - (k - 1) / k, rtol=1e-5, err_msg=name)


def test_epsilon_rule_loses_at_most_the_bias_and_stabilizer_share():
    w = R.normal(size=(4, 6))
    b = R.normal(size=4)
    x = R.normal(size=(1, 6))
    r = R.normal(size=(1, 4))
    eps = 0.05
    got = lrp_graph_run([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], x, {"w": w, "b": b},
                        Rule("epsilon", epsilon=eps), r)
    z = x @ w.T + b
    bound = np.sum(np.abs(r) * (np.abs(b) + eps) / np.abs(stab(z, eps)))
    assert abs(got.sum() - r.sum()) <= bound + 1e-9


# ---------- Relevance-CAM closed form ------------------------------------------------------------------
def test_relevance_cam_weights_at_the_last_layer_match_the_closed_form():
    model = small_cnn(head="gap", classes=10)
    ex = onnxcam.Explainer(model)
    x = random_images(2, (3, 32, 32), seed=11)
    res = ex.explain(x, method="relevancecam", layers="feat", target=[3, 8])
    wf = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "wf")).astype(np.float64)
    _, acts = ex.forward(x, ["feat"])
    for i, c in enumerate([3, 8]):
        xbar = acts["feat"][i].mean(axis=(1, 2)).astype(np.float64)
        r = np.full(10, -1 / 10)
        r[c] = 1.0
        wp = np.maximum(wf, 0)
        zp = wp @ xbar
        alpha = (1 / 256) * xbar * (wp.T @ (r / zp))   # DESIGN §6, hw = 16 x 16
        np.testing.assert_allclose(res.weights["feat"][i], alpha, rtol=1e-4, atol=1e-7)


# ---------- real models -------------------------------------------------------------------------------
@pytest.mark.parametrize("composite", ["epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1",
                                       "relevance-cam", "sr"])
def test_relevance_on_real_models_is_finite_and_non_trivial(composite):
    for path in (LITE0, PADDLE_CLS):
        ex = onnxcam.Explainer(path)
        layers = [l for l in ex.layers if l.preferred]
        mid = layers[len(layers) // 2].name
        x = onnxcam.load_images(photo_paths(2), ex.preprocess)
        rel = ex.relevance(x, ["input", mid, "auto"], composite=composite)
        for name, r in rel.items():
            assert np.isfinite(r).all(), (path.name, composite, name)
            assert np.abs(r).max() > 0 and (r != 0).mean() > 0.01, (path.name, composite, name)


def test_batch_norm_folding_is_reported():
    ex = onnxcam.Explainer(PADDLE_CLS)
    assert any("folded" in n and "BatchNormalization" in n for n in ex.model.notes)
    assert not any(n.op_type == "BatchNormalization" for n in ex.model.proto.graph.node)


def test_dead_channels_give_zero_not_nan():
    ex = onnxcam.Explainer(small_cnn(dead=True))
    x = random_images(2, (3, 32, 32))
    for comp in ("epsilon-plus-flat", "relevance-cam", "sr", "zplus"):
        rel = ex.relevance(x, ["input", "feat", "conv2"], composite=comp)
        assert all(np.isfinite(r).all() for r in rel.values()), comp
        assert np.all(rel["feat"][:, 2] == 0), comp   # the dead channel carries no relevance


def test_lrp_method_and_custom_composite():
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(1, (3, 32, 32))
    res = ex.explain(x, method="lrp", composite="epsilon-gamma-box")
    assert res.pixels["input"].shape == (1, 3, 32, 32)
    m, r = res.maps["input"], res.raw["input"]
    assert m.min() >= 0 and m.max() <= 1
    # signed rendering: 0.5 is no relevance, the 99.5th percentile of |R| reaches 0 or 1
    assert abs(np.abs(m - 0.5).max() - 0.5) < 1e-3
    assert np.sign(m[0, 16, 16] - 0.5) == np.sign(r[0, 16, 16]) or r[0, 16, 16] == 0
    mine = Composite("mine", Rule("epsilon", epsilon=0.25), by_name={"conv2": Rule("zplus")})
    assert ex.relevance(x, "input", composite=mine)["input"].shape == (1, 3, 32, 32)
    with pytest.raises(onnxcam.OnnxCamError, match="unknown composite"):
        ex.relevance(x, "input", composite="nope")


# ---------- parity with Zennit ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.own_process
@pytest.mark.parametrize("arch,size", [("vgg16_bn", 112), ("resnet50", 112)])
def test_epsilon_plus_flat_equals_zennit(arch, size, export_dir):
    import torch
    import torchvision  # noqa: F401 - test extras: a broken install must fail
    import zennit  # noqa: F401 - test extras: a broken install must fail
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    from export_torchvision import build, export

    from test_autograd_parity import ARCH_KW   # VGG with a narrowed classifier (memory)
    _, path = export(arch, export_dir / f"{arch}_zennit" / "model.onnx", size=size, seed=0,
                     verify=False, randomize_bn=True, **ARCH_KW.get(arch, {}))
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    gate_layers = [l.name for l in ex.layers if l.op in ("Relu", "MaxPool")]
    np.testing.assert_array_equal(ex.relevance(x, "input")["input"], ex.explain(x, method="lrp").pixels["input"])
    ex.sessions.clear()   # those two sessions hold the weights several times over (W⁺, W⁻): ~1 GB on ResNet-50
    _, target, acts, rel = ex.relevance_run(x, ["input"] + gate_layers, "epsilon-plus-flat", None, "logit")
    ours = rel["input"]

    net = build(arch, seed=0, randomize_bn=True, **ARCH_KW.get(arch, {}))
    canonizer = VGGCanonizer() if arch.startswith("vgg") else ResNetCanonizer()
    xt = torch.from_numpy(x).requires_grad_(True)
    onehot = torch.zeros(2, 1000)
    onehot[torch.arange(2), torch.from_numpy(target)] = 1.0
    # MaxPool winners (and the ReLU values feeding each rule) are onnxruntime's: a near-tie decided
    # the other way moves a whole window's relevance (gateflips.py)
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x}, batch)
    assert_same_run(gates, acts)
    with aligned_gates(gates) as flips, EpsilonPlusFlat(canonizers=[canonizer]).context(net) as modified:
        out = modified(xt)
        ref, = torch.autograd.grad(out, xt, grad_outputs=out * onehot)
    flips.check()
    ref = ref.detach().numpy()
    for i in range(2):
        r = np.corrcoef(ours[i].ravel(), ref[i].ravel())[0, 1]
        print(f"{arch} image {i}: Pearson {r:.9f}, max |diff| / max |R| "
              f"{np.abs(ours[i] - ref[i]).max() / np.abs(ref[i]).max():.2e}; {flips.report()}")
        # float32 rounding only, on one branch: each layer's sums round at ~FORWARD_RTOL of their
        # scale, and a rule's division R / (z + eps) amplifies a unit's rounding where |z| ~ eps;
        # 10x the forward tolerance, of the largest relevance
        np.testing.assert_allclose(ours[i], ref[i], atol=1e-3 * np.abs(ref[i]).max(),
                                   err_msg=f"{arch} image {i}; {flips.report()}")


# ---------- SR map --------------------------------------------------------------------------------
def test_context_aware_saliency_finds_the_odd_patch_and_is_deterministic():
    from onnxcam.saliency import context_aware_saliency
    img = np.full((120, 160, 3), 0.5, np.float32)
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    img[50:70, 100:120] = [1.0, 0.1, 0.1]          # one red square on grey
    s = context_aware_saliency(img)
    assert s.shape == (120, 160) and s.max() == pytest.approx(1.0)
    assert s[50:70, 100:120].mean() > 5 * s[:, :60].mean()
    np.testing.assert_array_equal(context_aware_saliency(img), s)


def test_context_aware_saliency_keeps_the_k_nearest_of_numpys_partition():
    """The K nearest are selected by onnxruntime's TopK: the same set as numpy's partition, so the
    same mean up to float32 summation order (|mean| <= max d; 1e-6 relative is ~8 float32 ulps),
    also where many distances tie (flat image regions give many equal patches) and for k = 1."""
    from onnxcam.saliency import _mean_of_smallest
    rng = np.random.default_rng(0)
    d = rng.random((300, 977), dtype=np.float32)
    d[:100, ::3] = 0.01                                 # ties across the k-th value (k = 7, 64)
    d[5] = np.inf                                       # a row of masked-out candidates
    d[6, :40] = np.inf
    for k in (1, 7, 64):
        ref = np.partition(d, k - 1, axis=1)[:, :k].astype(np.float64).mean(axis=1)
        np.testing.assert_allclose(_mean_of_smallest(d, k), ref, rtol=1e-6)
        np.testing.assert_allclose(_mean_of_smallest(d, k, threads=1), ref, rtol=1e-6)


def test_sr_map_is_invariant_to_the_scale_of_relevance_and_runs_on_photos(lite0):
    from onnxcam.methods.relevance import sr_from_relevance
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    res = lite0.explain(x, method="srmap")
    m = res.maps["input"]
    assert m.shape == (2, 224, 224) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(sr_from_relevance(res.pixels["input"] * 37.0), res.raw["input"], atol=1e-6)
    np.testing.assert_array_equal(lite0.explain(x, method="srmap").raw["input"], res.raw["input"])


def test_composites_are_cached_by_content_not_by_object_identity():
    """Composites made inline are freed after each call and a new one may get the same id()."""
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(1, (3, 32, 32))
    r1 = ex.relevance(x, "input", composite=Composite("mine", Rule("epsilon", epsilon=0.25)))["input"]
    r2 = ex.relevance(x, "input", composite=Composite("mine", Rule("zplus")))["input"]
    r3 = ex.relevance(x, "input", composite=Composite("mine", Rule("epsilon", epsilon=0.25)))["input"]
    assert not np.allclose(r1, r2)
    np.testing.assert_array_equal(r1, r3)


@pytest.mark.parametrize("method", ["lrp", "srmap"])
def test_pixel_methods_on_an_nhwc_model_equal_the_nchw_model(method):
    """The same network behind a leading NHWC Transpose gives the same NCHW pixel relevance."""
    from nets import nhwc_wrapper
    nchw, nhwc = onnxcam.Explainer(small_cnn()), onnxcam.Explainer(nhwc_wrapper(small_cnn()))
    x = random_images(2, (3, 32, 32), seed=4)
    a = nchw.explain(x, method=method)
    b = nhwc.explain(x.transpose(0, 2, 3, 1), method=method)
    assert b.pixels["input"].shape == (2, 3, 32, 32) and b.maps["input"].shape == (2, 32, 32)
    np.testing.assert_allclose(b.pixels["input"], a.pixels["input"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.maps["input"], a.maps["input"], atol=1e-4)
