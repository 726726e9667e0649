"""The real PP-OCR text detector rapidocr ships (models/rapidocr_det: a paddle2onnx export whose
output is a text-probability map [N, 1, H, W] after a final Sigmoid), explained as a segmenter.

Segment(threshold=0.3) sums the map's logits (the Sigmoid's input) over the pixels rapidocr
keeps as text (probability > 0.3). Checked here: S against onnxruntime's own run of the model,
dS/dA against float64 finite differences of the model itself at two layers (the DB head's
input and one FPN branch), every method family, and the CLI. Small inputs (96 px, a multiple
of 32 as the network needs) keep the float64 reference runs affordable.
"""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxcam
from conftest import MODELS, PHOTOS
from modelcheck import check_layer_gradient
from onnxcam.cli import main
from onnxcam.errors import OnnxCamError
from onnxcam.targets import Output, Segment

DET = MODELS / "rapidocr_det" / "PP-OCRv6_det_small.onnx"
SHA256 = "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"
SIZE = 96
TEXT_BOX = (0.05, 0.07, 0.95, 0.43)   # where text_photo draws its text, as fractions (x0, y0, x1, y1)


def text_photo(path):
    """coffee.jpg (320 x 213) with a white label and black text in its upper part."""
    img = cv2.imread(str(PHOTOS / "coffee.jpg"))
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(f * s) for f, s in zip(TEXT_BOX, (w, h, w, h)))
    cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), -1)
    cv2.putText(img, "onnxcam 13", (x0 + 10, y1 - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return text_photo(tmp_path_factory.mktemp("text") / "text_coffee.png")


@pytest.fixture(scope="module")
def det():
    return onnxcam.Explainer(DET, target=Segment(threshold=0.3), preprocess={"size": [SIZE, SIZE]})


def logits_and_probability(x):
    """onnxruntime's run of the unmodified file, with the final Sigmoid's input as a second output."""
    proto = onnx.load(str(DET))
    sigmoid = next(n for n in proto.graph.node if n.op_type == "Sigmoid")
    proto.graph.output.append(onnx.helper.make_tensor_value_info(sigmoid.input[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    prob, logits = sess.run(None, {"x": x})
    return logits.astype(np.float64), prob.astype(np.float64)


def test_bundle_is_the_unchanged_rapidocr_file_with_its_preprocessing(det):
    assert hashlib.sha256(DET.read_bytes()).hexdigest() == SHA256
    manifest = json.loads((DET.parent / "manifest.json").read_text())
    assert manifest["input_size"] == [736, 736] and all(s % 32 == 0 for s in manifest["input_size"])
    spec = det.preprocess   # the manifest's preprocessing, the size given here
    assert spec.channel_order == "BGR" and spec.resize == "letterbox" and spec.mean == (0.5, 0.5, 0.5)
    assert spec.std == (0.5, 0.5, 0.5) and spec.scale == pytest.approx(1 / 255)
    assert det.model.num_classes == 1 and not det.model.class_scores
    assert any("summing the input of the final Sigmoid" in n for n in det.model.notes)
    assert not [l.name for l in det.layers if l.name.startswith("onnxcam/")]   # the target's nodes are no layers


def test_segment_sums_the_logits_over_the_thresholded_region(det, photo):
    x = onnxcam.load_images([photo, PHOTOS / "chelsea.jpg"], det.preprocess)
    logits, prob = logits_and_probability(x)
    region = prob > 0.3
    assert region[0].sum() > 100                        # the label's text is found
    expected = (logits * region).sum(axis=(1, 2, 3))
    scores = det.forward(x)[0][:, 0]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3 * np.abs(logits).max())
    prob_ex = onnxcam.Explainer(DET, target=Segment(threshold=0.3), score="output",
                                preprocess={"size": [SIZE, SIZE]})
    np.testing.assert_allclose(prob_ex.forward(x)[0][:, 0], (prob * region).sum(axis=(1, 2, 3)), rtol=1e-4)
    half = det.with_target(Segment())                   # one channel: the model's own decision, p > 0.5
    np.testing.assert_allclose(half.forward(x)[0][:, 0], (logits * (prob > 0.5)).sum(axis=(1, 2, 3)),
                               rtol=1e-4, atol=1e-3 * np.abs(logits).max())
    mask = np.zeros((SIZE, SIZE), bool)
    mask[10:40, 5:90] = True
    masked = det.with_target(Segment(mask=mask))
    np.testing.assert_allclose(masked.forward(x)[0][:, 0], (logits[:, 0] * mask).sum(axis=(1, 2)),
                               rtol=1e-4, atol=1e-3 * np.abs(logits).max())


@pytest.mark.parametrize("layer", ["Concat.3", "Add.191"])
def test_gradients_equal_finite_differences(det, photo, layer):
    """dS/dA at the DB head's input (the four FPN scales concatenated at 1/4) and at the 1/32
    FPN branch (through nearest Resize x8, a Concat and the head), float64 central differences
    of the very model."""
    assert det.model.layer(layer)   # the catalog holds it
    x = onnxcam.load_images([photo], det.preprocess)
    check_layer_gradient(det, x, layer, np.ones((1, 1)))


METHODS = ["gradcam", "hirescam", "gradcam++", "layercam", "eigengradcam", "eigencam", "scorecam-pgc", "scorecam",
           "guided-backprop", "lrp", "relevancecam", "srmap"]


def test_every_method_family_gives_finite_varying_maps(det, photo):
    x = onnxcam.load_images([photo], det.preprocess)
    for method in METHODS:
        res = det.explain(x, method, layers="Concat.3", **({"top_k": 8} if "scorecam" in method else {}))
        for name, m in res.maps.items():
            assert np.all(np.isfinite(m)) and np.ptp(m) > 0, (method, name)
    with pytest.raises(OnnxCamError, match="GAP"):
        det.explain(x, "cam", layers="Concat.3")        # no GAP -> dense head to read
    # official scorecam weighs by the raw region score here (not a class: no softmax over one column)


def test_cli_explains_the_detector_and_the_map_sits_on_the_text(photo, tmp_path, capsys):
    args = ["explain", str(DET), str(photo), "--task", "segment", "--threshold", "0.3", "--size", str(SIZE),
            str(SIZE), "--method", "hirescam", "--layer", "Concat.3", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"]
    overlay = cv2.imread(str(tmp_path / f"{photo.stem}_hirescam_Concat.3.png"))
    assert overlay is not None and overlay.shape[1] == 320 and overlay.shape[0] > 213   # photo + caption
    with np.load(tmp_path / f"{photo.stem}_hirescam.npz") as npz:
        heat = npz["photo_map_0"].astype(np.float64)
    h, w = heat.shape
    x0, y0, x1, y1 = (int(f * s) for f, s in zip(TEXT_BOX, (w, h, w, h)))
    inside = np.zeros_like(heat, bool)
    inside[y0:y1, x0:x1] = True
    assert np.nanmean(heat[inside]) > 3 * np.nanmean(heat[~inside])


def test_threshold_is_checked(photo, tmp_path, capsys):
    for bad in (float("nan"), True, "0.3"):
        with pytest.raises(OnnxCamError, match="threshold"):
            Segment(threshold=bad)
    with pytest.raises(OnnxCamError, match="not both"):
        Segment(mask=np.ones((4, 4)), threshold=0.5)
    assert main(["explain", str(DET), str(photo), "--threshold", "0.3", "--size", "96", "96",
                 "--out", str(tmp_path)]) == 2
    assert "--threshold is for --task segment" in capsys.readouterr().err


def test_one_channel_output_without_sigmoid_needs_a_threshold_or_mask(tmp_path):
    """A one-channel map of raw values has no predicted region (its argmax is everywhere)."""
    from onnx import helper, numpy_helper
    w = numpy_helper.from_array(np.full((1, 3, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 1, 16, 16])], [w])
    path = tmp_path / "raw.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(OnnxCamError, match="one channel and no final Sigmoid"):
        onnxcam.Explainer(path, target=Segment())
    ex = onnxcam.Explainer(path, target=Segment(threshold=0.0))
    x = np.random.default_rng(0).normal(size=(1, 3, 16, 16)).astype(np.float32)
    y = onnxcam.Explainer(path, target=Output("y")).forward(x)[0]
    np.testing.assert_allclose(ex.forward(x)[0][0, 0], y[y > 0].sum(), rtol=1e-5)
