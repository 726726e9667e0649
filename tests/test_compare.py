"""Edge-deployment checks: layer matching across builds, `onnxcam compare`, and the exported explainer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxcam
from onnxcam.cli import main
from onnxcam.compare import compare
from onnxcam.deploy import build_explainer_model
from onnxcam.intake import load
from onnxcam.intake.matching import match_layers
from onnxcam.metrics import pearson, spearman, topk_iou
from conftest import LITE0, cat_and_coffee, photo_paths

AUTO = "/_swish_1/Clip_output_0"
# Known pairs (reference layer -> candidate layer) for the bundled model's builds (quantize.py).
KNOWN = {
    "fp16": {AUTO: "InsertedPrecisionFreeCast_" + AUTO,
             "/_blocks.0/_project_conv/Conv_output_0": "InsertedPrecisionFreeCast_/_blocks.0/_project_conv/Conv_output_0"},
    # QDQ drops the Clip after each Conv: the Conv's float output now carries the Clip's name,
    # and the clipped tensor is the DequantizeLinear output
    "int8_static": {"/_conv_stem/Conv_output_0": "/_swish/Clip_output_0",
                    "/_swish/Clip_output_0": "/_swish/Clip_output_0_DequantizeLinear_Output",
                    "/_blocks.14/Add_output_0": "/_blocks.14/Add_output_0",  # float Add, before its Q
                    AUTO: AUTO + "_DequantizeLinear_Output"},
    # dynamic INT8: ConvInteger -> Cast -> Mul(scale) -> Add(bias), the Add keeps the Conv's name
    "int8_dynamic": {"/_conv_stem/Conv_output_0": "/_conv_stem/Conv_output_0", AUTO: AUTO},
}


@pytest.mark.parametrize("variant", ["fp16", "fp16_io", "int8_static", "int8_dynamic"])
def test_every_layer_is_matched_one_to_one_and_known_pairs_hold(lite0, lite0_variants, variant):
    cand = load(lite0_variants[variant])
    matches = match_layers(lite0.model, cand)
    assert all(m.candidate for m in matches.values()), [m for m in matches.values() if not m.candidate]
    used = [m.candidate for m in matches.values()]
    assert len(set(used)) == len(used) == len(lite0.layers) == 91
    for ref, want in KNOWN.get(variant, KNOWN["fp16"] if variant == "fp16_io" else {}).items():
        assert matches[ref].candidate == want, (ref, matches[ref])


def test_matched_activations_agree_on_static_int8(lite0, lite0_variants):
    """The matching is right by value, not only by name: every matched candidate tensor correlates
    with its own reference layer more than with any same-shaped layer of another block (residual
    streams of neighbouring blocks are alike, so a match one block off would show here). How close
    INT8 stays is the quantizer's business: compare_table.py prints the worst Pearson."""
    cand = onnxcam.Explainer(lite0_variants["int8_static"], preprocess=lite0.preprocess)
    matches = match_layers(lite0.model, cand.model)
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    names = [l.name for l in lite0.layers]
    _, a = lite0.forward(x, names)
    _, b = cand.forward(x, [matches[n].candidate for n in names])
    block = {n: n.split("/")[1] for n in names}        # "_blocks.7", "_conv_stem", "_swish_1" ...
    for n in names:
        mine = b[matches[n].candidate]
        own = pearson(a[n], mine)
        for other in names:
            if block[other] != block[n] and a[other].shape == a[n].shape:
                assert own > pearson(a[other], mine), (n, matches[n].candidate, other, own)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_matching_across_the_two_pytorch_exporters(arch, export_dir):
    """TorchScript and dynamo exports name every tensor differently and order branches their own
    way; every layer still finds the tensor with the same values."""
    import torchvision  # noqa: F401 - test extras: a broken install must fail
    from export_torchvision import export
    paths = [export(arch, export_dir / f"match_{arch}_{e}" / "model.onnx", exporter=e, size=112,
                    seed=0, verify=False)[1] for e in ("torchscript", "dynamo")]
    ex_ts, ex_dy = onnxcam.Explainer(paths[0]), onnxcam.Explainer(paths[1])
    matches = match_layers(ex_ts.model, ex_dy.model)
    x = onnxcam.load_images(photo_paths(1), ex_ts.preprocess)
    names = [l.name for l in ex_ts.layers]
    assert all(matches[n].candidate for n in names)
    _, a = ex_ts.forward(x, names)
    _, b = ex_dy.forward(x, [matches[n].candidate for n in names])
    for n in names:
        np.testing.assert_allclose(b[matches[n].candidate], a[n], rtol=1e-3, atol=1e-4, err_msg=n)
    assert matches[ex_ts.model.auto_layer.name].candidate == ex_dy.model.auto_layer.name


def test_user_overrides_win_and_bad_ones_are_one_line(lite0, lite0_variants):
    cand = load(lite0_variants["fp16"])
    other = "InsertedPrecisionFreeCast_/_conv_head/Conv_output_0"
    m = match_layers(lite0.model, cand, {AUTO: other})
    assert m[AUTO].candidate == other and m[AUTO].how == "user"
    with pytest.raises(onnxcam.OnnxCamError, match="candidate has no layer 'nope'") as info:
        match_layers(lite0.model, cand, {AUTO: "nope"})
    assert "\n" not in str(info.value)


def test_agreement_figures_by_hand():
    a = np.array([[0.0, 0.0], [1.0, 3.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0]])
    # average ranks: a -> [0.5, 0.5, 2, 3], b -> [0, 1, 2.5, 2.5]
    ra, rb = np.array([0.5, 0.5, 2, 3]), np.array([0, 1, 2.5, 2.5])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert topk_iou(a, b, 25) == pytest.approx(0.5)   # {3.0 at (1,1)} vs the tied 2.0s {(1,0), (1,1)}
    assert topk_iou(a, b, 50) == pytest.approx(1.0)   # both: the bottom row
    sparse_a, sparse_b = np.zeros((10, 10)), np.zeros((10, 10))   # disjoint blobs on a zero floor
    sparse_a[1:4, 1:4], sparse_b[6:9, 6:9] = 1.0, 1.0
    assert topk_iou(sparse_a, sparse_b, 20) == 0.0 and topk_iou(sparse_a, sparse_a, 20) == 1.0
    broken = a.copy()
    broken[0, 0] = np.nan
    assert pearson(a, broken) == spearman(a, broken) == topk_iou(a, broken) == 0.0
    flat = np.zeros((4, 4))
    assert pearson(flat, a.repeat(2, 0).repeat(2, 1)) == 0.0 and pearson(flat, flat) == 1.0
    assert spearman(flat, np.eye(4)) == 0.0 and topk_iou(flat, np.eye(4)) == 0.0


def test_compare_figures_are_the_maps_figures(lite0, lite0_variants):
    """The report's numbers are exactly the agreement of the two explain() results, the top-1
    agreement is counted from both builds' logits, and the gate passes exactly at its threshold.
    How well the quantizer preserved the maps is not asserted (compare_table.py prints it)."""
    cand = onnxcam.Explainer(lite0_variants["int8_static"], preprocess=lite0.preprocess)
    results = {}
    out = compare(lite0, cand, cat_and_coffee(), method="gradcam", results=results, fail_under=0.9)
    a, b = results["reference"], results["candidate"]
    cand_layer = out["matching"][0]["candidate"]
    assert out["matching"][0] == {"reference": AUTO, "candidate": AUTO + "_DequantizeLinear_Output",
                                  "how": "structural"}
    for row in out["images"]:
        i = out["image_order"].index(row["image"])
        f = row["layers"][AUTO]
        assert f["pearson"] == pytest.approx(np.corrcoef(a.maps[AUTO][i].ravel(), b.maps[cand_layer][i].ravel())[0, 1], abs=1e-9)
        assert f["spearman"] == pytest.approx(spearman(a.maps[AUTO][i], b.maps[cand_layer][i]), abs=1e-12)
        assert f["iou"] == pytest.approx(topk_iou(a.maps[AUTO][i], b.maps[cand_layer][i], 20))
        t = row["target"]
        assert t == a.target[i] == b.target[i]          # both explain the reference's class
        assert row["score_delta"] == pytest.approx(float(b.logits[i, t] - a.logits[i, t]))
        assert (row["reference_top1"], row["candidate_top1"]) == (a.logits[i].argmax(), b.logits[i].argmax())
        assert row["top1_agrees"] == (a.logits[i].argmax() == b.logits[i].argmax())
        assert row["agreement"] == f["pearson"]        # the gate's figure: one layer, Pearson
    assert [r["agreement"] for r in out["images"]] == sorted(r["agreement"] for r in out["images"])
    summary = out["summary"]
    assert summary["top1_agreement"] == np.mean(a.logits.argmax(1) == b.logits.argmax(1))
    pearsons = [r["layers"][AUTO]["pearson"] for r in out["images"]]
    assert summary["layers"][AUTO]["mean_pearson"] == pytest.approx(np.mean(pearsons), abs=1e-15)
    assert summary["layers"][AUTO]["min_pearson"] == min(pearsons)
    assert out["agreement"] == pytest.approx(np.mean(pearsons), abs=1e-15)
    top1_ok = summary["top1_agreement"] >= 0.99
    assert out["gates"]["map"]["passed"] == (out["agreement"] >= 0.9)
    assert out["gates"]["top1"] == {"figure": "top1_agreement", "value": summary["top1_agreement"], "floor": 0.99,
                                    "passed": top1_ok, "images_agreeing": sum(r["top1_agrees"] for r in out["images"]),
                                    "changed": [Path(r["image"]).name for r in out["images"] if not r["top1_agrees"]]}
    assert out["passed"] == (out["agreement"] >= 0.9 and top1_ok)
    # the gate's arithmetic: a threshold equal to the figure passes, the next float above fails
    value = out["agreement"]
    at = compare(lite0, cand, cat_and_coffee(), method="gradcam", fail_under=value, top1_floor=0.0)
    above = compare(lite0, cand, cat_and_coffee(), method="gradcam", fail_under=float(np.nextafter(value, 2.0)),
                    top1_floor=0.0)
    assert at["agreement"] == above["agreement"] == value          # the same figure, recomputed
    assert at["passed"] and at["verdict"].startswith(f"PASS: mean map Pearson {value:.3f} >= ")
    assert not above["passed"] and above["verdict"].startswith(f"FAIL: mean map Pearson {value:.3f} < ")
    assert "top-1 agreement" in above["verdict"] and ">= 0.000 PASS" in above["verdict"]


def test_a_build_compared_with_itself_agrees_exactly(lite0):
    """Every figure at its maximum, every delta zero: the figures' own arithmetic."""
    out = compare(lite0, lite0, cat_and_coffee(), method="gradcam", fail_under=1.0)
    layer = out["summary"]["layers"][AUTO]
    assert out["passed"] and out["agreement"] == 1.0 and out["summary"]["top1_agreement"] == 1.0
    assert layer["activation_pearson"] == pytest.approx(1.0, abs=1e-12)
    for k in ("pearson", "spearman", "iou"):
        assert layer[f"mean_{k}"] == pytest.approx(1.0, abs=1e-12) and layer[f"min_{k}"] == pytest.approx(1.0, abs=1e-12)
    assert out["summary"]["max_abs_score_delta"] == 0.0 and out["summary"]["mean_abs_target_score_delta"] == 0.0


@pytest.mark.parametrize("variant,method", [("fp16", "gradcam"), ("fp16_io", "relevancecam"),
                                            ("int8_static", "relevancecam"), ("int8_static", "lrp"),
                                            ("int8_dynamic", "gradcam"), ("int8_dynamic", "scorecam")])
def test_compare_each_build(lite0, lite0_variants, variant, method):
    """Every build and method gives a complete, finite report at the right layer. The agreement
    figures themselves depend on the quantizer: tests/benchmarks/compare_table.py prints them."""
    options = {"top_k": 64} if method == "scorecam" else {}
    out = compare(LITE0, lite0_variants[variant], cat_and_coffee(), method=method, options=options)
    (name, layer), = out["summary"]["layers"].items()
    assert name == ("input" if method == "lrp" else AUTO)
    figures = [v for k, v in layer.items() if k not in ("candidate", "activation_pearson")]
    assert np.isfinite(figures).all() and all(-1 <= v <= 1 for v in figures), layer
    for k in ("pearson", "spearman", "iou"):
        assert layer[f"min_{k}"] <= layer[f"mean_{k}"]
    assert (layer["activation_pearson"] is None) == (method == "lrp")


def test_dynamic_int8_relevance_methods_say_why_not(lite0_variants):
    with pytest.raises(onnxcam.OnnxCamError, match="dynamic INT8 splits each one"):
        compare(LITE0, lite0_variants["int8_dynamic"], cat_and_coffee()[:1], method="relevancecam")


def broken_copy(tmp_path, value=0.0):
    """The bundled model with the last block's projection weights set to `value`."""
    model = onnx.load(LITE0)
    conv = next(n for n in model.graph.node if n.output[0] == "/_blocks.15/_project_conv/Conv_output_0")
    w = next(t for t in model.graph.initializer if t.name == conv.input[1])
    w.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(w), value), w.name))
    path = tmp_path / f"broken_{value}.onnx"
    onnx.save(model, path)
    return path


def flipping_copy(tmp_path, images, drop: float = 30.0):
    """The bundled model with the classifier's bias lowered by `drop` for the top-1 class of the
    first image only: that image (and any sharing its class) changes its top-1, the others keep
    theirs, and every gradient is unchanged (a bias has no gradient path), so the Grad-CAM maps
    of the reference's class are identical: decisions change, evidence does not."""
    ex = onnxcam.Explainer(LITE0)
    scores, _ = ex.forward(onnxcam.load_images(images, ex.preprocess))
    model = onnx.load(LITE0)
    bias = next(t for t in model.graph.initializer if t.name == "_fc.bias")
    values = numpy_helper.to_array(bias).copy()
    values[int(scores[0].argmax())] -= drop
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    path = tmp_path / "flipped.onnx"
    onnx.save(model, path)
    return path, scores.argmax(1)


def test_the_gate_fails_a_build_that_flips_decisions_with_identical_maps(tmp_path, capsys):
    """Issue 12: a map gate alone passed a build that flips half its top-1s. Here the maps are
    identical (Pearson 1) and one of two images changes its top-1: the default gate fails and says
    which floor failed; an identical build passes both; lowering the top-1 floor accepts it."""
    images = cat_and_coffee()
    flipped, top1 = flipping_copy(tmp_path, images)
    assert top1[0] != top1[1]          # the other photo keeps its class
    out = compare(LITE0, flipped, images, method="gradcam")
    assert out["agreement"] == pytest.approx(1.0, abs=1e-6) and out["gates"]["map"]["passed"]
    assert out["summary"]["top1_agreement"] == 0.5 and not out["gates"]["top1"]["passed"]
    assert out["passed"] is False and out["gates"]["top1"]["changed"] == [images[0].name]
    assert out["verdict"].startswith("FAIL: mean map Pearson 1.000 >= 0.900 PASS; top-1 agreement 0.500 "
                                     "(1/2 images) < 0.990 FAIL, changed on chelsea.jpg")
    same = compare(LITE0, LITE0, images, method="gradcam")
    assert same["passed"] and same["verdict"].startswith("PASS: mean map Pearson 1.000 >= 0.900 PASS; "
                                                          "top-1 agreement 1.000 (2/2 images) >= 0.990 PASS")
    assert compare(LITE0, flipped, images, method="gradcam", top1_floor=0.5)["passed"]
    assert "verdict" not in compare(LITE0, flipped, images, method="gradcam", fail_under=None, top1_floor=None)
    # the CLI: exit 1, one line on stderr, both gates in the JSON
    code = main(["compare", str(LITE0), str(flipped), *map(str, images), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0] == f"onnxcam: {out['verdict']}"
    saved = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert saved["gates"]["top1"]["floor"] == 0.99 and saved["gates"]["map"]["floor"] == 0.9
    assert main(["compare", str(LITE0), str(flipped), *map(str, images), "--top1-floor", "0.5",
                 "--map-floor", "0.99", "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("onnxcam: PASS: ")


def test_cli_gate_fails_a_broken_candidate_and_passes_fp16(lite0_variants, tmp_path, capsys):
    images = [str(p) for p in cat_and_coffee()]
    out = tmp_path / "bad"
    code = main(["compare", str(LITE0), str(broken_copy(tmp_path)), *images, "--fail-under", "0.9",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("onnxcam: FAIL: mean map Pearson 0.000 < 0.900 FAIL; "
                                                             "top-1 agreement 0.000 (0/2 images) < 0.990 FAIL")
    report = json.loads((out / "comparison.json").read_text())
    assert report["passed"] is False and report["summary"]["top1_agreement"] == 0.0
    html = (out / "report.html").read_text()
    assert "FAIL" in html and "difference" in html and html.count("<img") == 2 * 4
    good = tmp_path / "good"
    assert main(["compare", str(LITE0), str(lite0_variants["fp16"]), *images, "--fail-under", "0.99",
                 "--gate", "iou", "--out", str(good)]) == 0
    before = (good / "report.html").read_bytes()
    assert main(["compare", str(LITE0), str(lite0_variants["fp16"]), *images, "--out", str(good)]) == 2
    assert (good / "report.html").read_bytes() == before   # nothing overwritten without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_a_candidate_that_computes_nan_scores_zero_and_stays_valid_json(tmp_path):
    out = compare(LITE0, broken_copy(tmp_path, np.inf), cat_and_coffee(), method="gradcam", fail_under=0.5)
    json.dumps(out, allow_nan=False)                    # strict JSON: no NaN anywhere
    assert not out["passed"] and out["agreement"] == 0.0
    assert any("not finite" in note for note in out["notes"])


def test_cli_match_override(lite0_variants, tmp_path, capsys):
    layer = "/_blocks.15/_project_conv/Conv_output_0"
    cand_layer = "InsertedPrecisionFreeCast_" + layer
    code = main(["compare", str(LITE0), str(lite0_variants["fp16"]), str(cat_and_coffee()[0]), "--layers", layer,
                 "--match", f"{layer}={cand_layer}", "--out", str(tmp_path / "o"), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["matching"] == [{"reference": layer, "candidate": cand_layer, "how": "user"}]


# ----- the exported explainer

def _run(model: onnx.ModelProto, feeds: dict):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "relevancecam"])
def test_exported_explainer_equals_explain(lite0, method):
    model = build_explainer_model(lite0, method)
    onnx.checker.check_model(model, full_check=True)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert [o.name for o in model.graph.output] == ["logits", "heatmap", "class"]
    x = onnxcam.load_images(photo_paths(3), lite0.preprocess)
    logits, heat, cls = _run(model, {lite0.model.input_name: x})
    res = lite0.explain(x, method=method)
    np.testing.assert_allclose(heat, res.maps[AUTO], atol=1e-5)
    np.testing.assert_allclose(logits, res.logits, atol=1e-5)
    np.testing.assert_array_equal(cls, res.target)


def test_exported_explainer_with_a_class_input_other_layouts_and_builds(lite0, lite0_variants):
    from conftest import ROOT
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    targets = np.array([281, 504], np.int64)
    model = build_explainer_model(lite0, "gradcam", "/_blocks.15/_swish_1/Clip_output_0", target="input")
    _, heat, cls = _run(model, {lite0.model.input_name: x, "target_class": targets})
    res = lite0.explain(x, method="gradcam", layers="/_blocks.15/_swish_1/Clip_output_0", target=targets)
    np.testing.assert_allclose(heat, res.maps["/_blocks.15/_swish_1/Clip_output_0"], atol=1e-5)
    np.testing.assert_array_equal(cls, targets)
    keras = onnxcam.Explainer(ROOT / "tests" / "fixtures" / "keras_small_nhwc.onnx")   # NHWC layers
    c, h, w = keras.model.image_shape
    xk = np.random.default_rng(0).normal(size=(2, h, w, c)).astype(np.float32)
    _, heat, _ = _run(build_explainer_model(keras, "hirescam"), {keras.model.input_name: xk})
    np.testing.assert_allclose(heat, keras.explain(xk, method="hirescam").maps[keras.model.auto_layer.name], atol=1e-5)
    q = onnxcam.Explainer(lite0_variants["int8_static"], preprocess=lite0.preprocess)
    _, heat, _ = _run(build_explainer_model(q, "relevancecam"), {q.model.input_name: x})
    np.testing.assert_allclose(heat, q.explain(x, method="relevancecam").maps[q.model.auto_layer.name], atol=1e-5)


def test_export_explainer_cli(tmp_path, capsys):
    out = tmp_path / "explain.onnx"
    assert main(["export-explainer", str(LITE0), "--method", "hirescam", "-o", str(out)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    before = out.read_bytes()
    assert main(["export-explainer", str(LITE0), "-o", str(out)]) == 2
    assert out.read_bytes() == before and "already exists" in capsys.readouterr().err
    # argparse: scorecam cannot be computed in one graph run (one line, exit 2)
    assert main(["export-explainer", str(LITE0), "--method", "scorecam", "-o", str(tmp_path / "s.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxcam: error: ") and "invalid choice: 'scorecam'" in err[0]


def test_exported_explainer_survives_models_that_use_its_names():
    """Many models call their output `logits`; a layer may even be called `heatmap`."""
    from nets import small_cnn
    model = small_cnn(head="gap")
    for node in model.graph.node:
        node.input[:] = ["heatmap" if i == "feat" else i for i in node.input]
        node.output[:] = ["heatmap" if o == "feat" else o for o in node.output]
    ex = onnxcam.Explainer(model)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    for method in ("gradcam", "relevancecam"):
        exported = build_explainer_model(ex, method, "heatmap")
        _, heat, _ = _run(exported, {ex.model.input_name: x})
        np.testing.assert_allclose(heat, ex.explain(x, method=method, layers="heatmap").maps["heatmap"], atol=1e-5)


def test_exported_explainer_of_dynamic_int8_runs_one_image_at_a_time(lite0, lite0_variants):
    """Dynamic quantization couples the images of a batch: the export fixes the batch to 1."""
    q = onnxcam.Explainer(lite0_variants["int8_dynamic"], preprocess=lite0.preprocess)
    model = build_explainer_model(q, "gradcam")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    heat = np.concatenate([_run(model, {q.model.input_name: x[i:i + 1]})[1] for i in range(2)])
    np.testing.assert_allclose(heat, q.explain(x, method="gradcam").maps[AUTO], atol=1e-5)


def test_production_paddle_classifier_builds(tmp_path):
    """The rapidocr Paddle export (opset 11, HardSigmoid x Mul, MaxPool): FP16 and static INT8
    builds match every layer and compare completely (their agreement figures are printed by
    tests/benchmarks/compare_table.py). onnxruntime writes the FP16 build's final
    Softmax as ReduceMax/Exp/ReduceSum/Div; intake still finds the logits under it."""
    from conftest import PADDLE_CLS
    from quantize import to_fp16, to_int8_static
    ref = onnxcam.Explainer(PADDLE_CLS)
    builds = {"fp16": to_fp16(PADDLE_CLS, tmp_path / "fp16.onnx"),
              "int8_static": to_int8_static(PADDLE_CLS, tmp_path / "int8.onnx")}
    for name, path in builds.items():
        cand = onnxcam.Explainer(path, preprocess=ref.preprocess)
        assert cand.model.final_activation == "Softmax", name
        matches = match_layers(ref.model, cand.model)
        assert all(m.candidate for m in matches.values()), name
        out = compare(ref, cand, photo_paths(), method="gradcam")
        (layer,) = out["summary"]["layers"].values()
        assert layer["candidate"] == matches[ref.model.auto_layer.name].candidate, name
        figures = [v for k, v in layer.items() if k != "candidate"]
        assert np.isfinite(figures).all(), (name, layer)


def test_builds_explaining_different_scores_are_refused(tmp_path):
    """Logits against probabilities would compare two questions: one line says how to align them."""
    from nets import small_cnn
    onnx.save(small_cnn(final="Softmax"), tmp_path / "soft.onnx")
    onnx.save(small_cnn(), tmp_path / "plain.onnx")
    x = tmp_path / "x.png"
    import cv2
    cv2.imwrite(str(x), np.full((32, 32, 3), 128, np.uint8))
    with pytest.raises(onnxcam.OnnxCamError, match="input of its final Softmax but the candidate its output"):
        compare(tmp_path / "soft.onnx", tmp_path / "plain.onnx", [x], layers="feat")
    out = compare(tmp_path / "soft.onnx", tmp_path / "plain.onnx", [x], layers="feat", score="output")
    assert out["matching"][0]["candidate"] == "feat"
