"""Issue 13's tasks through every command: `evaluate`, `compare` and `export-explainer` (CLI and
API) with Segment / MultiLabel / Embed / Output targets; what each metric follows per task; the
per-pixel decision gate of `compare` on FP16 / INT8 segmenters; LRP conservation from a target's
start relevance. The models are built with onnx.helper (no torch: a few seconds); the torchvision
segmenter is in the own_process test at the end."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from conftest import photo_paths, random_images
from nets import small_cnn
from onnxcam.cli import main
from onnxcam.compare import compare
from onnxcam.evaluate import evaluate
from onnxcam.graph.rules.lrp import Composite, Rule
from onnxcam.metrics import average_drop_increase
from onnxcam.metrics.decisions import class_map
from onnxcam.postprocess import softmax
from onnxcam.targets import Embed, MultiLabel, Output, Segment

SIZE = 32
CLASSES = 3


def tiny_segmenter(seed: int = 0, biases: bool = True, swap: tuple[int, int] | None = None,
                   head_bias: tuple = (0.0, 0.0, 0.0)) -> onnx.ModelProto:
    """conv3x3/2(3->8)+ReLU, conv3x3/2(8->16)+ReLU = 'feat' (8x8), 1x1 conv to 3 classes, bilinear
    Resize to the input's 32x32 = 'out' (raw logits, as torchvision segmenters end). `swap`: the
    head's rows of two classes exchanged (a build that decides other classes everywhere);
    `head_bias` is added to the head's bias (a negative one makes a class's region sums negative)."""
    rng = np.random.default_rng(seed)
    w = {"w1": rng.normal(0, 0.5, (8, 3, 3, 3)), "w2": rng.normal(0, 0.3, (16, 8, 3, 3)),
         "wh": rng.normal(0, 0.4, (CLASSES, 16, 1, 1)),
         "b1": rng.normal(0, 0.1, 8) * biases, "b2": rng.normal(0, 0.1, 16) * biases,
         "bh": rng.normal(0, 0.3, CLASSES) * biases + np.asarray(head_bias)}
    if swap:
        for k in ("wh", "bh"):
            w[k][list(swap)] = w[k][list(swap[::-1])]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales"))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["feat"]),
             helper.make_node("Conv", ["feat", "wh", "bh"], ["head"]),
             helper.make_node("Resize", ["head", "", "scales"], ["out"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    graph = helper.make_graph(nodes, "tiny_segmenter",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", CLASSES, SIZE, SIZE])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


PRE = {"size": [SIZE, SIZE]}


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "seg.onnx"
    onnx.save(tiny_segmenter(), str(path))
    return path


@pytest.fixture(scope="module")
def photos3():
    return photo_paths(3)


def run_raw(path, x):
    """The model file's own outputs from onnxruntime, no onnxcam in between."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# ---------- metrics: what each one follows per task ---------------------------------------------------
def test_metrics_follow_the_raw_score_for_region_sums_and_sigmoid_for_multilabel(seg_path, photos3):
    """Deletion / insertion / ROAD curves start at the unperturbed image's score of the explained
    column: the raw region sum for Segment (softmax over region sums is no probability of anything),
    the sigmoid for a multi-label head, the softmax for a classifier."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[4:24, 6:28] = True
    ex = onnxcam.Explainer(seg_path, target=Segment(mask=mask), preprocess=PRE)
    x = onnxcam.load_images(photos3, ex.preprocess)
    out = run_raw(seg_path, x)
    s = (out * mask).sum(axis=(2, 3))                                # S_k by numpy from the file's own output
    got = evaluate(ex, photos3, ["gradcam"], steps=4, road_percentages=(50,), target=1)
    assert got["metric_score"] == "raw score S (not a probability)"
    row = got["methods"]["gradcam"]["layers"][ex.model.auto_layer.name]
    assert got["methods"]["gradcam"]["targets"] == [1, 1, 1]
    np.testing.assert_allclose([c[0] for c in row["curves"]["deletion"]], s[:, 1], rtol=1e-4)
    np.testing.assert_allclose([c[-1] for c in row["curves"]["insertion"]], s[:, 1], rtol=1e-4)
    # ... and evaluate takes the target object itself, as explain does
    via = evaluate(onnxcam.Explainer(seg_path, target=Output("out"), preprocess=PRE), photos3, ["gradcam"],
                   steps=4, road_percentages=(), target=Segment(cls=1, mask=mask))
    assert via["methods"]["gradcam"]["layers"][ex.model.auto_layer.name]["deletion_auc"] == \
        pytest.approx(row["deletion_auc"], rel=1e-5)

    tagger = small_cnn(final="Sigmoid", classes=5)
    ml = onnxcam.Explainer(tagger, target=MultiLabel(cls=2), preprocess=PRE)
    got = evaluate(ml, photos3, ["gradcam"], steps=2, road_percentages=())
    assert got["metric_score"] == "sigmoid probability"
    curves = got["methods"]["gradcam"]["layers"]["feat"]["curves"]["deletion"]
    np.testing.assert_allclose([c[0] for c in curves], run_raw_model(tagger, x)[:, 2], rtol=1e-5)

    softmax_cls = onnxcam.Explainer(small_cnn(), preprocess=PRE)
    got = evaluate(softmax_cls, photos3, ["gradcam"], steps=2, road_percentages=())
    assert got["metric_score"] == "softmax probability"
    logits = run_raw_model(small_cnn(), x)
    curves = got["methods"]["gradcam"]["layers"]["feat"]["curves"]["deletion"]
    np.testing.assert_allclose([c[0] for c in curves], softmax(logits).max(axis=1), rtol=1e-5)


def run_raw_model(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_average_drop_of_a_signed_score_is_relative_to_its_size(seg_path):
    """Region sums may be negative: drop = max(0, Y - O) / |Y|, by numpy on the file's outputs."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[0:16, 0:16] = True
    model = tiny_segmenter(head_bias=(-4.5, 0.0, 0.0))
    ex = onnxcam.Explainer(model, target=Segment(mask=mask), preprocess=PRE)
    x = random_images(4, (3, SIZE, SIZE), seed=3)
    maps = np.random.default_rng(0).uniform(size=(4, SIZE, SIZE)).astype(np.float32)
    y = (run_raw_model(model, x) * mask).sum(axis=(2, 3))
    o = (run_raw_model(model, x * maps[:, None]) * mask).sum(axis=(2, 3))
    for t in range(CLASSES):
        got = average_drop_increase(ex, x, maps, np.full(4, t))
        want = np.maximum(0, y[:, t] - o[:, t]) / np.abs(y[:, t]) * 100
        np.testing.assert_allclose(got["per_image_drop"], want, rtol=1e-4)
    assert (y < 0).any() and (y > 0).any()   # the case the |Y| is for is exercised


def test_scorecam_weights_are_the_raw_target_score_where_s_is_not_a_class(seg_path, photos3):
    """Official Score-CAM weighs channel k by the target's probability on X ⊙ U_k; for a cosine
    (one column: its softmax is always 1, every weight equal) or a region sum it is the raw S."""
    e = small_cnn(classes=12)
    ref = run_raw_model(e, onnxcam.load_images(photos3[2:], onnxcam.Explainer(e, preprocess=PRE).preprocess))[0]
    for ex, t in ((onnxcam.Explainer(e, target=Embed(ref), preprocess=PRE), 0),
                  (onnxcam.Explainer(seg_path, target=Segment(), preprocess=PRE), 1)):
        x = onnxcam.load_images(photos3[:1], ex.preprocess)
        layer = ex.model.auto_layer.name
        res = ex.explain(x, "scorecam", layers=layer, target=t)
        acts = ex.forward(x, [layer])[1][layer][0]
        live = np.ptp(acts.reshape(len(acts), -1), axis=1) > 0
        want = np.zeros(len(acts))   # constant channels: no mask, weight 0
        want[live] = ex.masked_scores(x, acts[live][:, None], align_corners=False, eps=0.0)[:, t]
        np.testing.assert_allclose(res.weights[layer][0], want, rtol=1e-5, atol=1e-6)
        assert np.ptp(res.weights[layer][0][live]) > 0


# ---------- compare: the per-pixel decision gate --------------------------------------------------------
def test_compare_segmenter_builds_gate_on_the_pixels_whose_class_is_unchanged(seg_path, photos3, tmp_path):
    from quantize import to_fp16, to_int8_static
    fp16 = to_fp16(seg_path, tmp_path / "fp16.onnx")
    int8 = to_int8_static(seg_path, tmp_path / "int8.onnx", manifest=PRE, photos=photos3[0].parent)
    swapped = tmp_path / "swapped.onnx"
    onnx.save(tiny_segmenter(swap=(0, 1)), str(swapped))
    x = onnxcam.load_images(photos3, onnxcam.Explainer(seg_path, target=Segment(), preprocess=PRE).preprocess)
    ref_classes = run_raw(seg_path, x).argmax(axis=1)
    for cand, passes in ((fp16, True), (int8, None), (swapped, False)):
        res = compare(seg_path, cand, photos3, task=Segment(cls=2), preprocess=PRE, top1_floor=0.9, fail_under=None)
        cand_classes = run_raw(cand, x).argmax(axis=1)
        per_image = (ref_classes == cand_classes).reshape(3, -1).mean(axis=1)
        rows = {r["image"]: r for r in res["images"]}
        np.testing.assert_allclose([rows[str(p)]["decision_agreement"] for p in photos3], per_image)
        assert res["summary"]["decision"] == "per-pixel class" and res["summary"]["per_pixel"]
        assert res["summary"]["top1_agreement"] == pytest.approx(per_image.mean())
        for p, r in zip(photos3, per_image):   # IoU of class 2's region, the class explained
            a, b = ref_classes[photos3.index(p)] == 2, cand_classes[photos3.index(p)] == 2
            union = (a | b).sum()
            assert rows[str(p)]["region_iou"] == pytest.approx((a & b).sum() / union if union else 1.0)
            assert rows[str(p)]["probability_delta"] is None   # region sums have no probability
        assert res["passed"] == (per_image.mean() >= 0.9)
        if passes is not None:
            assert res["passed"] is passes, res["verdict"]
        print(cand.name, res["verdict"])
    assert "per-pixel class agreement" in res["verdict"] and "below the floor on" in res["verdict"]
    assert per_image.max() < 0.9   # the swapped head: the gate fails on decisions its maps may keep


def test_compare_cli_task_segment_and_multilabel_label_sets(seg_path, photos3, tmp_path, capsys):
    swapped = tmp_path / "swapped.onnx"
    onnx.save(tiny_segmenter(swap=(0, 1)), str(swapped))
    args = ["compare", str(seg_path), str(swapped), *map(str, photos3), "--size", str(SIZE), str(SIZE), "--json"]
    assert main([*args, "--task", "segment", "--target", "2", "--out", str(tmp_path / "c1")]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["decision"] == "per-pixel class" and not out["gates"]["top1"]["passed"]
    assert all(r["target"] == 2 for r in out["images"])
    assert main([*args, "--task", "segment", "--top1-floor", "0", "--map-floor", "-1",
                 "--out", str(tmp_path / "c2")]) == 0
    capsys.readouterr()

    # embed: the candidate is compared on the reference model's embedding of --reference
    emb = tmp_path / "emb.onnx"
    onnx.save(small_cnn(classes=12), str(emb))
    assert main(["compare", str(emb), str(emb), *map(str, photos3), "--size", str(SIZE), str(SIZE), "--json",
                 "--task", "embed", "--reference", str(photos3[0]), "--out", str(tmp_path / "c3")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["decision"] == "top-1" and out["passed"]
    assert {r["image"]: r["score_delta"] for r in out["images"]} == {str(p): 0.0 for p in photos3}

    # multi-label: an image agrees when the same labels are on (logit > 0)
    a, b = small_cnn(final="Sigmoid", classes=5, seed=0), small_cnn(final="Sigmoid", classes=5, seed=0)
    x = onnxcam.load_images(photos3, onnxcam.Explainer(a, preprocess=PRE).preprocess)
    on_a = run_raw_model(a, x) >= 0.5
    k = int(np.flatnonzero(on_a.any(axis=0))[0])   # a label on for some image: the candidate turns it off
    bf = next(t for t in b.graph.initializer if t.name == "bf")
    bias = numpy_helper.to_array(bf).copy()
    bias[k] -= 50.0
    bf.CopyFrom(numpy_helper.from_array(bias, "bf"))
    on_b = run_raw_model(b, x) >= 0.5
    res = compare(a, b, photos3, task=MultiLabel(), preprocess=PRE, fail_under=None)
    assert res["summary"]["decision"] == "label set (sigmoid >= 0.5)"
    rows = {r["image"]: r for r in res["images"]}
    for i, p in enumerate(photos3):
        assert rows[str(p)]["reference_labels"] == np.flatnonzero(on_a[i]).tolist()
        assert rows[str(p)]["candidate_labels"] == np.flatnonzero(on_b[i]).tolist()
        assert rows[str(p)]["decision_agreement"] == float((on_a[i] == on_b[i]).all())
    assert not on_b[:, k].any() and res["summary"]["top1_agreement"] < 1 and not res["passed"]

    # Explainers given: the candidate explains the reference's target, or is refused when it brings another
    ref, cand = onnxcam.Explainer(a, preprocess=PRE), onnxcam.Explainer(b, preprocess=PRE)
    same = compare(ref.with_target(MultiLabel()), cand, photos3, fail_under=None)
    assert same["summary"]["top1_agreement"] == res["summary"]["top1_agreement"]
    with pytest.raises(onnxcam.OnnxCamError, match="the candidate MultiLabel"):
        compare(ref, cand.with_target(MultiLabel()), photos3)


# ---------- export-explainer: ends at S, the column index as its target input ---------------------------
def test_export_explainer_task_segment_and_embed_equal_explain(seg_path, photos3, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "mask.png"), np.pad(np.full((12, 20), 255, np.uint8), ((4, 16), (6, 6))))
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    onnx_path = tmp_path / "seg_explainer.onnx"
    assert main(["export-explainer", str(seg_path), "--task", "segment", "--mask", str(tmp_path / "mask.png"),
                 "--target", "input", "--size", str(SIZE), str(SIZE), "-o", str(onnx_path)]) == 0
    assert "outputs logits [N, 3] (the segment score S)" in capsys.readouterr().out
    ex = onnxcam.Explainer(seg_path, target=Segment(mask=mask), preprocess=PRE)
    x = onnxcam.load_images(photos3, ex.preprocess)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for cls in range(CLASSES):
        logits, heat, chosen = sess.run(["logits", "heatmap", "class"],
                                        {"x": x, "target_class": np.full(3, cls, np.int64)})
        res = ex.explain(x, "gradcam", target=cls)
        np.testing.assert_allclose(logits, (run_raw(seg_path, x) * mask).sum(axis=(2, 3)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(heat, res.maps[res.layers[0]], atol=1e-5)
        assert list(chosen) == [cls] * 3

    # embed: S [N, 1] = cosine to the reference image's embedding; --model-output picks the output
    emb_path = tmp_path / "emb.onnx"
    onnx.save(small_cnn(classes=12), str(emb_path))
    out = tmp_path / "emb_explainer.onnx"
    assert main(["export-explainer", str(emb_path), "--task", "embed", "--reference", str(photos3[0]),
                 "--model-output", "logits", "--method", "hirescam", "--size", str(SIZE), str(SIZE),
                 "-o", str(out)]) == 0
    capsys.readouterr()
    e = run_raw_model(small_cnn(classes=12), x)
    cosine = e @ e[0] / np.linalg.norm(e, axis=1) / np.linalg.norm(e[0])
    logits, heat = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        ["logits", "heatmap"], {"x": x})
    np.testing.assert_allclose(logits[:, 0], cosine, atol=1e-5)
    emb = onnxcam.Explainer(emb_path, target=Embed(e[0]), preprocess=PRE)
    np.testing.assert_allclose(heat, emb.explain(x, "hirescam").maps["feat"], atol=1e-5)
    for bad, words in ((["--model-output", "logits:3"], "--model-output NAME:INDEX is for --task output"),
                       (["--task", "segment", "--reference", str(photos3[0])], "--reference is for --task embed")):
        assert main(["export-explainer", str(emb_path), *bad, "--size", str(SIZE), str(SIZE),
                     "-o", str(tmp_path / "bad.onnx")]) == 2
        assert words in capsys.readouterr().err


def test_evaluate_cli_task_segment_writes_raw_score_curves(seg_path, photos3, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "mask.png"), np.pad(np.full((16, 16), 255, np.uint8), 8))
    assert main(["evaluate", str(seg_path), *map(str, photos3[:2]), "--task", "segment", "--mask",
                 str(tmp_path / "mask.png"), "--class", "1", "--methods", "hirescam", "--steps", "3", "--no-road",
                 "--size", str(SIZE), str(SIZE), "--out", str(tmp_path / "ev")]) == 0
    capsys.readouterr()
    got = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert got["metric_score"] == "raw score S (not a probability)" and got["methods"]["hirescam"]["targets"] == [1, 1]
    assert "raw score S" in (tmp_path / "ev" / "report.html").read_text()


# ---------- LRP conservation from the target's start relevance -----------------------------------------
def test_lrp_conserves_a_segment_region_sum_and_an_embedding_cosine():
    """Bias-free nets. Under LRP-0 (ε -> 1e-9) every cut keeps Σ R = S within float32 rounding (as
    test_lrp's classifier test: 1e-5), for Segment's region sum (ReduceSum and Resize take the
    z-rule, the constant mask passes relevance: pixels outside the region get none) and for
    Embed's cosine (Div gives all relevance to the numerator e·r̂, so 1/|e| acts as a constant
    factor and the |e| branch gets none: the cosine is shared out as a linear score with weights
    r̂/|e| frozen at the image would be).
    The default EpsilonPlusFlat keeps what its rules promise: z+ (the 1x1 head) conserves each
    output unit's relevance exactly where some input contributes positively (Σ_c x_c w⁺ > 0) and
    drops it where none does (a location whose features are all 0); flat (the first conv)
    always conserves; conv2's units with relevance have a positive input, so conserve too."""
    lrp0 = Composite("lrp-0", Rule("epsilon", epsilon=1e-9), norm_epsilon=1e-9)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[2:20, 10:30] = True
    model = tiny_segmenter(biases=False)
    seg = onnxcam.Explainer(model, target=Segment(mask=mask), preprocess=PRE)
    x = random_images(3, (3, SIZE, SIZE), seed=4)
    res = seg.explain(x, "lrp", composite=lrp0, target=1)
    assert list(res.conservation)[-1] == "input"
    for layer, kept in res.conservation.items():
        np.testing.assert_allclose(kept, 1.0, rtol=1e-5, err_msg=layer)
    np.testing.assert_allclose(res.raw["input"].sum(axis=(1, 2)), res.logits[:, 1], rtol=1e-5)
    # the relevance stays in the region's receptive field: the 1x1 head and bilinear Resize keep it local
    far = np.ones((SIZE, SIZE), bool)
    far[:28, 4:] = False
    assert np.abs(res.pixels["input"][:, :, far]).max() == 0

    scores, _, acts, rel = seg.relevance_run(x, ["head", "feat", "input"], "epsilon-plus-flat", 1, "logit")
    total = lambda r: r.reshape(len(r), -1).astype(np.float64).sum(axis=1)   # noqa: E731
    np.testing.assert_allclose(total(rel["head"]), scores[:, 1], rtol=1e-5)
    wh = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "wh"))[1, :, 0, 0]
    positive = np.einsum("nchw,c->nhw", acts["feat"], np.maximum(wh, 0)) > 0   # z+ of class 1's head unit
    kept = (rel["head"][:, 1] * positive).reshape(3, -1).sum(axis=1)
    assert (~positive).any() and not np.allclose(kept, total(rel["head"]))  # some relevance is dropped
    np.testing.assert_allclose(total(rel["feat"]), kept, rtol=1e-5)
    np.testing.assert_allclose(total(rel["input"]), kept, rtol=1e-5)

    e = small_cnn(classes=12)
    for t in e.graph.initializer:    # bias-free
        if t.name.startswith("b"):
            t.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(t).shape, np.float32), t.name))
    ref = np.random.default_rng(1).normal(size=12)
    emb = onnxcam.Explainer(e, target=Embed(ref), preprocess=PRE)
    res = emb.explain(x, "lrp", composite=lrp0)
    for layer, kept in res.conservation.items():
        np.testing.assert_allclose(kept, 1.0, rtol=1e-5, err_msg=layer)
    np.testing.assert_allclose(res.raw["input"].sum(axis=(1, 2)), res.logits[:, 0], rtol=1e-5)


# ---------- a torchvision segmenter through export-explainer ----------------------------------------------
@pytest.mark.own_process
def test_exported_explainer_of_a_torchvision_segmenter_equals_explain(tmp_path):
    """LRASPP-MobileNetV3 (random weights, torchvision) with Segment() (argmax regions): the exported
    explainer, each image's top-1 or a class input, returns S and Explainer.explain's heatmap (1e-5).

    Checked at the last layer whose Grad-CAM raw map varies by >= 5% of its size: at the auto layer
    this random net's maps are nearly constant (spread 0.7% of their value: its argmax region is
    the whole image), so the min-max normalization multiplies float32 summation-order differences
    between the two graphs by ~140 (measured 8e-5 for both methods there)."""
    import torch  # noqa: F401 - test extras
    from test_targets_parity import SIZE as TV_SIZE, export, segmenter

    path = export(segmenter("lraspp_mobilenet_v3_large", classes=4), tmp_path / "lraspp.onnx")
    ex = onnxcam.Explainer(path, target=Segment(), preprocess={"size": [TV_SIZE, TV_SIZE]})
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    s = ex.forward(x)[0]
    present = [np.flatnonzero(row) for row in s]   # classes with a predicted region (else S = 0, no map)
    late = [l.name for l in ex.layers if l.preferred][-12:]
    raw = ex.explain(x, "gradcam", layers=late).raw
    spread = {n: (np.ptp(r, axis=(1, 2)) / np.abs(r).max(axis=(1, 2))).min() for n, r in raw.items()}
    conditioned = [n for n in late if spread[n] >= 0.05][-1]
    for method, layer in (("gradcam", conditioned), ("hirescam", conditioned)):
        for target in ("top1", "input"):
            model = onnxcam.build_explainer_model(ex, method, layer, target=target)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            for pick in ((0, 0), (-1, -1)) if target == "input" else (None,):
                cls = None if pick is None else np.array([p[k] for p, k in zip(present, pick)], np.int64)
                feeds = {"image": x} | ({} if cls is None else {"target_class": cls})
                logits, heat, chosen = sess.run(["logits", "heatmap", "class"], feeds)
                res = ex.explain(x, method, layers=layer, target=None if cls is None else cls.tolist())
                np.testing.assert_allclose(logits, res.logits, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(heat, res.maps[res.layers[0]], atol=1e-5, err_msg=method)
                assert list(chosen) == list(res.target) and all(np.ptp(h) > 0.5 for h in heat)
    # the per-pixel classes compare reads are the dense output's argmax, for the FP32 and the deployed builds
    from quantize import to_fp16, to_int8_static
    dense = run_raw(path, x)
    np.testing.assert_array_equal(class_map(ex, x), dense.argmax(axis=1))
    mask = np.zeros((TV_SIZE, TV_SIZE), bool)
    mask[20:70, 30:80] = True
    for cand in (to_fp16(path, tmp_path / "fp16.onnx"),
                 to_int8_static(path, tmp_path / "int8.onnx", manifest={"size": [TV_SIZE, TV_SIZE]})):
        res = compare(path, cand, photo_paths(2), task=Segment(mask=mask), preprocess={"size": [TV_SIZE, TV_SIZE]})
        same = (dense.argmax(axis=1) == run_raw(cand, x).argmax(axis=1)).reshape(2, -1).mean(axis=1)
        assert res["summary"]["top1_agreement"] == pytest.approx(same.mean())
        print(cand.name, res["verdict"])
