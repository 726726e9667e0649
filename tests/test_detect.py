"""Detectors (issue 13): YOLOv8 / YOLO11 with random weights, exported by both PyTorch exporters
(tests/fixtures/yolo, converters/export_yolo.py), explained one detection at a time.

Golden values come from torch autograd and pytorch-grad-cam in the converter (no ultralytics
here). Tolerances: the class logit and dS/dA agree to 1e-4 of their largest magnitude, and the
Grad-CAM / HiResCAM raw maps by Pearson >= 0.999: onnxruntime and torch run the same float32
network with different convolution algorithms (summation order), so values differ by float32
rounding accumulated over ~60 layers (the head output already differs by ~5e-6 of its scale);
YOLO's SiLU has no ReLU kink that could flip between runtimes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxcam
from onnxcam.errors import OnnxCamError
from onnxcam.metrics.agreement import pearson
from onnxcam.targets import Detect, DetectHead, find_detections
from onnxcam.targets import detections as D

YOLO = Path(__file__).parent / "fixtures" / "yolo"
MODELS = sorted(p.stem for p in YOLO.glob("*.onnx"))
PHOTOS = Path(__file__).parent.parent / "models" / "photos"


def golden(model: str) -> dict:
    return dict(np.load(YOLO / f"{model.split('_')[0]}.golden.npz"))


def view_input(view: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(view.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


@pytest.fixture(scope="module", params=MODELS)
def detector(request):
    return request.param, onnxcam.Explainer(YOLO / f"{request.param}.onnx", target=Detect())


# ----- numpy: decode, NMS, IoU, choosing
def test_fixtures_are_the_four_exports():
    assert MODELS == ["yolo11_dynamo", "yolo11_torchscript", "yolov8_dynamo", "yolov8_torchscript"]


def test_iou_and_decode():
    assert D.iou([0, 0, 10, 10], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]]) == \
        pytest.approx([1.0, 50 / 150, 0.0, 0.0])
    head = np.zeros((1, 4 + 2, 3), np.float32)     # [N, 4+K, A]: cx, cy, w, h, then K probabilities
    head[0, :4, 1] = [10, 20, 4, 6]
    head[0, 4:, 1] = [0.2, 0.9]
    boxes, conf = D.decode(head, "boxes_first")
    assert boxes.shape == (1, 3, 4) and conf.shape == (1, 3, 2)
    assert boxes[0, 1].tolist() == [8, 17, 12, 23] and conf[0, 1].tolist() == pytest.approx([0.2, 0.9])
    v5 = np.zeros((1, 3, 5 + 2), np.float32)       # [N, A, 5+K]: objectness x class probability
    v5[0, 2] = [10, 20, 4, 6, 0.5, 0.2, 0.9]
    boxes5, conf5 = D.decode(v5, "anchors_first")
    assert boxes5[0, 2].tolist() == [8, 17, 12, 23] and conf5[0, 2].tolist() == pytest.approx([0.1, 0.45])
    with pytest.raises(OnnxCamError, match="layout must be"):
        D.decode(head, "v9")
    with pytest.raises(OnnxCamError, match=r"\[N, 4\+K, A\]"):
        D.decode(head[0], "boxes_first")


def test_nms_per_class_sorted_and_choosing():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 1, 1]], np.float32)
    conf = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.6, 0.0], [0.1, 0.0]], np.float32)
    d = D.detections(boxes, conf, conf_threshold=0.25, iou_threshold=0.5)
    # candidate 1 overlaps 0 (IoU 0.82, same class): suppressed; 2 is the same box in another class: kept
    assert d.candidates.tolist() == [0, 2, 3] and d.classes.tolist() == [0, 1, 0]
    assert d.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert D.pick(d, 0) == 0 and D.pick(d, 2) == 3
    with pytest.raises(OnnxCamError, match=r"no detection 3: the model detects only 3 \(0\.\.2\)"):
        D.pick(d, 3)
    with pytest.raises(OnnxCamError, match="detection must be an index"):
        D.pick(d, -1)
    # a box matches the detection it overlaps most (IoU >= 0.5; ties: the more confident), else
    # the candidate it overlaps most
    assert D.match(d, [0, 0, 10, 10]) == 0             # 0 and 2: the same box, 0 more confident
    assert D.match(d, [1, 0, 11, 10]) == 0             # candidate 1 fits exactly but was suppressed
    assert D.match(d, [50, 50, 61, 61]) == 3
    assert D.match(d, [0, 0, 1.2, 1.2]) == 4           # below the confidence threshold: still explained
    with pytest.raises(OnnxCamError, match=r"no candidate box overlaps the box by IoU >= 0.5 \(the closest: IoU 0.2"):
        D.match(d, [0, 0, 20, 25])
    with pytest.raises(OnnxCamError, match="conf must be a number between 0 and 1"):
        D.detections(boxes, conf, conf_threshold=1.5)


# ----- intake: the head, the score, the layers
def test_intake_finds_head_neck_and_scores(detector):
    name, ex = detector
    t = ex.target
    assert t.head.layout == "boxes_first" and (t.head.classes, t.head.anchors) == (20, 2100)
    assert ex.model.num_classes == 2100 and ex.model.final_activation == "Sigmoid"
    assert [ex.model.layer(n).shape for n in t.neck] == \
        [(32, 40, 40), (56, 20, 20), (104, 10, 10)]    # P3, P4, P5 at strides 8, 16, 32
    assert ex.model.auto_layer.name == t.neck[0]
    assert ex.labels is None and len(ex.class_names) == 20   # labels name the classes, not the candidates
    g = golden(name)
    scores, _ = ex.forward(view_input(g["view"]))
    assert int(scores[0].argmax()) == int(g["candidate"])   # the default column: the best detection
    assert scores[0, g["candidate"]] == pytest.approx(float(g["logit"]), abs=1e-4 * abs(float(g["logit"])) + 1e-5)


def test_letterbox_view_matches_the_converters(detector):
    name, ex = detector
    _, views = onnxcam.load_images([PHOTOS / "astronaut.jpg", PHOTOS / "chelsea.jpg"], ex.preprocess,
                                   return_views=True)
    assert np.array_equal(views[0], golden(name)["view"])       # 320 x 320: the photo itself
    top = (320 - 213) // 2                                       # 213 x 320: grey bands above and below
    assert (views[1][:top] == 114).all() and (views[1][top + 213:] == 114).all()
    assert not (views[1][top:top + 213] == 114).all()


# ----- numbers: autograd and pytorch-grad-cam
def test_gradients_equal_autograd(detector):
    name, ex = detector
    g = golden(name)
    x, cand = view_input(g["view"]), int(g["candidate"])
    scores, targets, acts, grads = ex.gradients(x, ex.target.neck, target=[cand])
    assert list(targets) == [cand]
    for k, layer in enumerate(ex.target.neck):
        np.testing.assert_allclose(acts[layer][0], g[f"act{k}"], atol=1e-4 * np.abs(g[f"act{k}"]).max())
        ref = g[f"grad{k}"]
        err = np.abs(grads[layer][0] - ref).max() / max(np.abs(ref).max(), 1e-30)
        print(f"{name} {layer}: dS/dA max relative error to autograd {err:.2e}")   # README's figures (-s)
        assert np.abs(grads[layer][0] - ref).max() <= 1e-4 * np.abs(ref).max(), layer
    # candidates 0..1599 come from P3, ..1999 from P4, ..2099 from P5; in the PAN neck P3 feeds P4
    # feeds P5, so the neck outputs up to the candidate's own scale have a gradient, finer ones none
    scale = int(np.searchsorted([1600, 2000], cand, side="right"))
    for k, layer in enumerate(ex.target.neck):
        assert bool(np.any(g[f"grad{k}"])) == (k <= scale) == bool(np.any(grads[layer])), (layer, cand)


def test_explicit_class_is_the_same_score(detector):
    name, ex = detector
    g = golden(name)
    x = view_input(g["view"])
    fixed = ex.with_target(Detect(cls=int(g["cls"])))
    a, b = ex.forward(x)[0], fixed.forward(x)[0]
    assert a[0, g["candidate"]] == pytest.approx(b[0, g["candidate"]], abs=1e-6)
    assert (b <= a + 1e-6).all() and (b < a - 1e-3).any()   # class cls vs each candidate's best class


def test_gradcam_hirescam_equal_pytorch_grad_cam(detector):
    name, ex = detector
    g = golden(name)
    x, cand = view_input(g["view"]), int(g["candidate"])
    for method in ("gradcam", "hirescam"):
        res = ex.explain(x, method, layers=ex.target.neck, target=[cand])
        for k, layer in enumerate(ex.target.neck):
            r = pearson(res.raw[layer][0], g[f"{method}{k}"])
            print(f"{name} {method} {layer}: Pearson {r:.6f} to pytorch-grad-cam")   # README's figures (-s)
            assert r >= 0.999, (method, layer, r)


@pytest.mark.parametrize("model,method", [("yolov8_torchscript", m) for m in
                                          ("gradcam", "hirescam", "scorecam", "lrp", "relevancecam")]
                         + [("yolo11_dynamo", m) for m in ("scorecam", "relevancecam")])
def test_every_method_family_gives_a_map(model, method):
    ex = onnxcam.Explainer(YOLO / f"{model}.onnx", target=Detect())
    x = onnxcam.load_images([PHOTOS / "chelsea.jpg"], ex.preprocess)
    d = find_detections(ex, x)[0]
    res = ex.explain(x, method, target=[D.pick(d, 1)])
    assert res.target.tolist() == [int(d.candidates[1])]
    for raw in res.raw.values():
        assert np.all(np.isfinite(raw)) and np.ptp(raw[0]) > 0, method


def test_detections_use_the_head_before_the_sigmoid_and_pick_its_candidates():
    ex = onnxcam.Explainer(YOLO / "yolov8_torchscript.onnx", target=Detect())
    x = onnxcam.load_images([PHOTOS / "astronaut.jpg", PHOTOS / "coffee.jpg"], ex.preprocess)
    dets = find_detections(ex, x)
    logits = ex.forward(x)[0]
    for i, d in enumerate(dets):
        assert len(d) > 0 and (np.diff(d.scores) <= 0).all()
        np.testing.assert_allclose(d.scores, 1 / (1 + np.exp(-logits[i, d.candidates])), rtol=1e-5)
    head = DetectHead()
    flat = ex.with_target(head).forward(x)[0]
    assert head.values(flat).shape == (2, 24, 2100)


def test_lrp_to_the_pixels_of_yolo11_takes_attnlrp_and_cnn_composites_say_why_not():
    """YOLO11's C2PSA block multiplies two activations (attention): LRP picks the attnlrp composite
    there by itself and reaches the pixels; a CNN composite asked for by name refuses in one line
    that names attnlrp."""
    ex = onnxcam.Explainer(YOLO / "yolo11_torchscript.onnx", target=Detect())
    x = onnxcam.load_images([PHOTOS / "chelsea.jpg"], ex.preprocess)
    res = ex.explain(x, "lrp")   # auto: the input pixels and the layers LRP shows
    assert any("lrp (attnlrp)" in n for n in res.notes)
    assert np.isfinite(res.pixels["input"]).all() and np.abs(res.pixels["input"]).sum() > 0
    with pytest.raises(OnnxCamError, match="attnlrp"):
        ex.explain(x, "lrp", composite="epsilon-plus-flat")


# ----- the CLI
def _white_near(png: Path, x: float, y: float, r: int = 3) -> bool:
    import cv2
    img = cv2.imread(str(png))
    h, w = img.shape[:2]
    x, y = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
    patch = img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
    return bool((patch.min(axis=2) >= 250).any())


def test_cli_detection_and_box_write_overlays_with_the_box(tmp_path, capsys):
    import json

    from onnxcam.cli import main
    model, photo = str(YOLO / "yolov8_torchscript.onnx"), str(PHOTOS / "rocket.jpg")   # 214 x 320: letterboxed
    assert main(["explain", model, photo, "--task", "detect", "--detection", "1", "--method", "gradcam",
                 "--out", str(tmp_path / "k"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (det,) = summary["detections"]
    assert det["detection"] == 1 and summary["images"][0]["target"] == det["candidate"]
    assert det["name"] in (YOLO / "labels.txt").read_text().split()
    png = next(p for p in map(Path, summary["files"]) if p.suffix == ".png")
    x0, y0, x1, y1 = det["box"]
    ys = np.clip([y0, y1], 0, 213)
    assert _white_near(png, np.clip(x0, 0, 319), ys.mean()) or _white_near(png, np.clip(x1, 0, 319), ys.mean())
    # the same box, given back in photo pixels, picks the same candidate (IoU 1 with it)
    assert main(["explain", model, photo, "--task", "detect", "--box", ",".join(map(str, det["box"])),
                 "--method", "hirescam", "--out", str(tmp_path / "b"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["detections"][0]
    assert again["candidate"] == det["candidate"] and again["detection"] == 1
    # several detections: the image once per detection, one overlay each
    assert main(["explain", model, photo, "--task", "detect", "--detection", "0,1", "--method", "gradcam",
                 "--out", str(tmp_path / "two"), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [d["detection"] for d in both["detections"]] == [0, 1]
    assert [i["target"] for i in both["images"]] == [d["candidate"] for d in both["detections"]]
    assert sorted(p.name[:3] for p in (tmp_path / "two").glob("*.png")) == ["00_", "01_"]


@pytest.mark.parametrize("flags,words", [
    (["--task", "detect", "--detection", "999"], "there is no detection 999"),
    (["--task", "detect", "--detection", "-1"], "--detection must be an index >= 0"),
    (["--task", "detect", "--detection", "0,x"], "--detection must be an index >= 0"),
    (["--task", "detect", "--box", "10,10,5,5"], "--box must be X1,Y1,X2,Y2"),
    (["--task", "detect", "--box", "1,2,3"], "--box must be X1,Y1,X2,Y2"),
    (["--task", "detect", "--box", "0,0,2,2"], "no candidate box overlaps the box by IoU >= 0.5"),
    (["--task", "detect", "--detection", "0", "--box", "0,0,9,9"], "not both"),
    (["--task", "detect", "--target", "3"], "--target names classes"),
    (["--task", "detect", "--conf", "1.5"], "--conf must be a number between 0 and 1"),
    (["--task", "classify", "--detection", "0"], "--detection is for --task detect"),
    (["--task", "detect", "--output", "nope"], "has no output 'nope'"),
])
def test_cli_bad_detection_flags_are_one_line(tmp_path, capsys, flags, words):
    from onnxcam.cli import main
    rc = main(["explain", str(YOLO / "yolo11_dynamo.onnx"), str(PHOTOS / "astronaut.jpg"), *flags,
               "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("onnxcam: error:") and words in err[0], err
    assert not any(tmp_path.iterdir())


# ----- other head forms: NMS baked into the export, YOLOv5's [N, A, 5+K]
def test_nms_baked_in_is_explained_at_the_head_before_it(tmp_path):
    """The fixture with ONNX NonMaxSuppression appended (as ultralytics' nms=True exports and
    torchvision.ops.nms wrappers do): its output is the kept (batch, class, candidate) indices;
    Detect finds the [N, 4+K, A] Concat upstream and explains it unchanged."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(YOLO / "yolov8_torchscript.onnx"))
    out = proto.graph.output[0].name
    const = lambda name, v: helper.make_tensor(name, TensorProto.INT64 if np.asarray(v).dtype.kind == "i"  # noqa: E731
                                               else TensorProto.FLOAT, np.asarray(v).shape, np.asarray(v).ravel())
    proto.graph.initializer.extend([const("nms_0", [0]), const("nms_4", [4]), const("nms_24", [24]),
                                    const("nms_1", [1]), const("nms_max", [100]), const("nms_iou", [0.7]),
                                    const("nms_conf", [0.25])])
    proto.graph.node.extend([
        helper.make_node("Slice", [out, "nms_0", "nms_4", "nms_1"], ["nms_xywh_t"]),
        helper.make_node("Transpose", ["nms_xywh_t"], ["nms_xywh"], perm=[0, 2, 1]),
        helper.make_node("Slice", [out, "nms_4", "nms_24", "nms_1"], ["nms_scores"]),
        helper.make_node("NonMaxSuppression", ["nms_xywh", "nms_scores", "nms_max", "nms_iou", "nms_conf"],
                         ["selected"], center_point_box=1)])
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3]))
    path = tmp_path / "yolov8_nms.onnx"
    onnx.save(proto, str(path))
    plain = onnx.load(str(YOLO / "yolov8_torchscript.onnx"))
    assert len(plain.graph.node) < len(proto.graph.node)
    ex = onnxcam.Explainer(path, target=Detect(), preprocess=onnxcam.Explainer(
        YOLO / "yolov8_torchscript.onnx", target=Detect()).preprocess)
    g = golden("yolov8_torchscript")
    x = view_input(g["view"])
    assert ex.target.head.layout == "boxes_first" and ex.model.num_classes == 2100
    scores, _, _, grads = ex.gradients(x, ex.target.neck[:1], target=[int(g["candidate"])])
    assert scores[0, g["candidate"]] == pytest.approx(float(g["logit"]), abs=1e-4)
    assert np.abs(grads[ex.target.neck[0]][0] - g["grad0"]).max() <= 1e-4 * np.abs(g["grad0"]).max()


def test_rows_after_the_classes_are_not_scores(tmp_path):
    """YOLOv8-seg / -pose / -obb heads concatenate mask coefficients, keypoints or an angle after
    the class probabilities: Concat(boxes, Sigmoid(classes), extra). Here 8 extra rows of 0.99
    (above the confidence threshold) are appended to the fixture's head: nothing changes."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(YOLO / "yolov8_torchscript.onnx"))
    head = next(n for n in proto.graph.node if n.output[0] == proto.graph.output[0].name)
    proto.graph.initializer.append(numpy_helper.from_array(np.full((1, 8, 2100), 0.99, np.float32), "extra_rows"))
    head.input.append("extra_rows")
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 32
    path = tmp_path / "seg_like.onnx"
    onnx.save(proto, str(path))
    plain = onnxcam.Explainer(YOLO / "yolov8_torchscript.onnx", target=Detect())
    ex = onnxcam.Explainer(path, target=Detect(), preprocess=plain.preprocess)
    assert (ex.target.head.classes, ex.target.head.extra) == (20, 8)
    x = onnxcam.load_images([PHOTOS / "rocket.jpg"], plain.preprocess)
    ours, theirs = find_detections(ex, x)[0], find_detections(plain, x)[0]
    assert np.array_equal(ours.candidates, theirs.candidates) and np.array_equal(ours.all_scores, theirs.all_scores)
    np.testing.assert_allclose(ex.forward(x)[0], plain.forward(x)[0], atol=1e-5)


def test_yolov5_layout_scores_objectness_times_class(tmp_path):
    """A YOLOv5-style head [N, A, 5+K] (sigmoids applied inside, obj x p_c as the confidence)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    k = 3
    w = helper.make_tensor("w", TensorProto.FLOAT, (5 + k, 3, 3, 3), rng.normal(0, 0.3, (5 + k, 3, 3, 3)).ravel())
    shape = helper.make_tensor("shape", TensorProto.INT64, (3,), [0, 5 + k, -1])
    nodes = [helper.make_node("Conv", ["image", "w"], ["feat"], pads=[1, 1, 1, 1], strides=[4, 4]),
             helper.make_node("Sigmoid", ["feat"], ["prob"]),
             helper.make_node("Reshape", ["prob", "shape"], ["rows"]),
             helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1])]
    graph = helper.make_graph(nodes, "v5", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 64, 5 + k])], [w, shape])
    path = tmp_path / "v5.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    raw = onnxcam.Explainer(path, target=onnxcam.targets.Output("output0"), preprocess={"size": [32, 32]})
    rows = raw.forward(x)[0].reshape(2, 64, 5 + k)
    for cls, expected in ((None, rows[..., 4] * rows[..., 5:].max(axis=2)), (2, rows[..., 4] * rows[..., 7])):
        ex = raw.with_target(Detect(cls=cls))
        assert ex.target.head.layout == "anchors_first" and ex.target.head.classes == k
        np.testing.assert_allclose(ex.forward(x)[0], expected, rtol=1e-5)
        res = ex.explain(x, "gradcam", layers="prob")
        assert np.all(np.isfinite(res.raw["prob"]))
    d = find_detections(ex, x, conf=0.0)[0]
    assert len(d) > 0 and d.all_boxes.shape == (64, 4)


def test_exported_explainer_takes_a_candidate_index(tmp_path):
    """The exported explainer of a Detect graph: target_class is the candidate (detection) index."""
    import onnxruntime as ort

    from onnxcam.deploy import export_explainer
    ex = onnxcam.Explainer(YOLO / "yolov8_torchscript.onnx", target=Detect())
    path = export_explainer(ex, tmp_path / "explainer.onnx", "gradcam", "auto", "input", False)
    x = onnxcam.load_images([PHOTOS / "rocket.jpg"], ex.preprocess)
    cand = D.pick(find_detections(ex, x)[0], 1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, heat, _ = sess.run(None, {ex.model.input_name: x, "target_class": np.array([cand], np.int64)})
    res = ex.explain(x, "gradcam", target=[cand])
    assert logits.shape == (1, 2100) and pearson(heat[0], res.maps[ex.model.auto_layer.name][0]) >= 0.999


def test_fp16_and_int8_builds_find_the_same_head_and_detections(tmp_path, monkeypatch):
    """FP16 (a float16 head: cast for the target's masks) and static INT8 QDQ builds (the neck is read
    through QuantizeLinear/DequantizeLinear) of the YOLOv8 fixture (converters/quantize.py)."""
    import json
    monkeypatch.chdir(tmp_path)   # onnxruntime's quantizer leaves temporary files in the working folder

    from quantize import to_fp16, to_int8_static
    src = YOLO / "yolov8_torchscript.onnx"
    manifest = json.loads((YOLO / "manifest.json").read_text())
    ref = onnxcam.Explainer(src, target=Detect())
    x = onnxcam.load_images([PHOTOS / "rocket.jpg"], ref.preprocess)
    best = D.pick(find_detections(ref, x)[0], 0)
    expected = ref.explain(x, "gradcam", target=[best]).raw[ref.target.neck[0]][0]
    # FP16: float16 rounding of our own conversion, asserted; INT8: what onnxruntime's calibration
    # decides is printed, not asserted (the structure found in its graph is)
    for build, floor in ((to_fp16(src, tmp_path / "fp16.onnx"), 0.999),
                         (to_int8_static(src, tmp_path / "int8.onnx", manifest=manifest), None)):
        ex = onnxcam.Explainer(build, target=Detect(), preprocess=ref.preprocess)
        shapes = [ex.model.layer(n).shape for n in ex.target.neck]   # FP16 names them after its Casts
        assert shapes == [(32, 40, 40), (56, 20, 20), (104, 10, 10)] and ex.model.auto_layer.name == ex.target.neck[0]
        found = find_detections(ex, x)[0].candidates[:3]
        got = ex.explain(x, "gradcam", target=[best]).raw[ex.target.neck[0]][0]
        print(f"{build.name}: reference's best candidate among the build's top 3: {best in found}; "
              f"Grad-CAM Pearson {pearson(got, expected):.4f}")
        if floor is not None:
            assert best in found and pearson(got, expected) >= floor, build


def test_matched_detections_pair_same_class_boxes_once():
    from onnxcam.metrics.decisions import matched_detections

    def dets(boxes, classes):
        boxes = np.asarray(boxes, np.float64)
        n = len(boxes)
        return D.Detections(boxes, np.linspace(0.9, 0.5, n), np.asarray(classes), np.arange(n),
                            boxes, np.linspace(0.9, 0.5, n), np.asarray(classes))
    a = dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [1, 2, 1])
    b = dets([[1, 0, 11, 10], [20, 20, 30, 30], [20, 20, 30, 30], [80, 80, 90, 90]], [1, 1, 2, 1])
    pairs = matched_detections(a, b)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0), (1, 2)]      # class 2's box pairs with b's class-2 copy
    assert np.isclose(pairs[0][2], 90 / 110)
    assert matched_detections(a, dets(np.zeros((0, 4)), [])) == []


def test_compare_gates_a_detector_on_matched_detections(tmp_path):
    """compare --task detect: the reference against itself keeps every detection; against its FP16
    build the figure is printed (float16 can move a confidence across the threshold)."""
    from onnxcam import compare
    from quantize import to_fp16
    src = YOLO / "yolov8_torchscript.onnx"
    photos = [PHOTOS / "rocket.jpg", PHOTOS / "astronaut.jpg"]
    same = compare(src, src, photos, method="gradcam", task=Detect())
    assert same["summary"]["decision"].startswith("detections") and same["summary"]["top1_agreement"] == 1.0
    rows = same["images"]
    assert all(r["reference_detections"] == r["candidate_detections"] == r["matched"] for r in rows)
    assert sum(r["matched"] for r in rows) > 0
    fp16 = compare(src, to_fp16(src, tmp_path / "fp16.onnx"), photos, method="gradcam", task=Detect(),
                   top1_floor=None)
    print("FP16 detections kept:", fp16["summary"]["top1_agreement"],
          [(r["reference_detections"], r["candidate_detections"], r["matched"]) for r in fp16["images"]])


# ----- outlines for segmentation (annotate.outline_mask through the CLI's marks)
def test_segment_regions_are_outlined(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from onnxcam.annotate import outline_mask
    from onnxcam.cli import main
    from onnxcam.targets import Output, Segment
    from onnxcam.targets.from_args import _predicted_regions

    rng = np.random.default_rng(1)
    w = helper.make_tensor("w", TensorProto.FLOAT, (3, 3, 3, 3), rng.normal(0, 1, (3, 3, 3, 3)).ravel())
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["out"], pads=[1, 1, 1, 1], strides=[2, 2])],
                              "seg", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 16, 16])], [w])
    path = tmp_path / "seg.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    spec = {"size": [32, 32], "resize": "letterbox"}
    ex = onnxcam.Explainer(path, target=Segment(), preprocess=spec)
    photo = PHOTOS / "chelsea.jpg"
    (marks,) = _predicted_regions(ex, [photo], 1)
    dense = onnxcam.Explainer(path, target=Output("out"), preprocess=spec).forward(
        onnxcam.load_images([photo], ex.preprocess))[0].reshape(3, 16, 16)
    assert np.array_equal(marks.mask, dense.argmax(axis=0) == 1) and 0 < marks.mask.sum() < 256
    grey = np.full((160, 160, 3), 100, np.uint8)
    drawn = outline_mask(grey, marks.mask)
    assert (drawn == 255).all(axis=2).sum() > 20 and (drawn != grey).any(axis=2).mean() < 0.5
    assert main(["explain", str(path), str(photo), "--task", "segment", "--class", "1", "--resize", "letterbox",
                 "--method", "gradcam", "--out", str(tmp_path / "maps")]) == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) == 1
