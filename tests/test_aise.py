"""AISE (methods/perturbation.py): OpenVINO XAI's adaptive RISE. OpenVINO XAI itself cannot be
installed next to the pinned packages (openvino-xai 1.0/1.1 require numpy 1.*), so its definition
is checked instead: the map equals the algorithm restated here from their code's description
(SciPy DIRECT over Gaussian centres, preservation − deletion gain, their kernel density
estimate) on a plain onnxruntime session, it finds planted evidence, and it repeats exactly."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxcam
from onnxcam.errors import OnnxCamError
from onnxcam.methods.perturbation import AISE_WIDTHS, aise_map, gaussian_mask

SIZE = 24
BLOCK = (slice(2, 8), slice(15, 21))   # rows 2..7, columns 15..20: top right, so cx ≠ cy


def _planted_model(tmp_path):
    """x [N, 3, 24, 24] -> channel sum (1x1 conv, a 4-D layer) -> flatten -> 2 logits; class 0's
    weights are 0.2 on BLOCK and 0 elsewhere, class 1's are 0: only BLOCK holds class 0's evidence."""
    w0 = np.zeros((SIZE, SIZE), np.float32)
    w0[BLOCK] = 0.2
    fc = np.stack([w0.ravel(), np.zeros(SIZE * SIZE, np.float32)])
    inits = [numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "wc"),
             numpy_helper.from_array(fc, "wf"), numpy_helper.from_array(np.zeros(2, np.float32), "bf")]
    nodes = [helper.make_node("Conv", ["x", "wc"], ["feat"]),
             helper.make_node("Flatten", ["feat"], ["flat"]),
             helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                                  ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 2])], inits)
    path = tmp_path / "planted.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _image():
    return np.random.default_rng(0).uniform(0.5, 1.0, (1, 3, SIZE, SIZE)).astype(np.float32)


def test_gaussian_masks_peak_at_their_centre():
    m = gaussian_mask((1.0, 0.0), 0.1, (5, 9))          # top-right corner
    assert m.max() == 1.0 and m[0, 8] == 1.0 and m[4, 0] < 1e-10
    np.testing.assert_allclose(gaussian_mask((0.5, 0.5), 0.2, (9, 9)), gaussian_mask((0.5, 0.5), 0.2, (9, 9)).T)


def test_aise_map_is_their_kernel_density_estimate():
    hw = (6, 7)
    searches = [(0.1, ([(0.2, 0.3), (0.8, 0.5)], [0.5, -0.25])), (0.25, ([(0.5, 0.5)], [-0.4]))]
    first = gaussian_mask((0.2, 0.3), 0.1, hw) * 0.5 - gaussian_mask((0.8, 0.5), 0.1, hw) * 0.25
    total = first / first.max() - 0.4 * gaussian_mask((0.5, 0.5), 0.25, hw)   # no division: max < 0
    np.testing.assert_allclose(aise_map(searches, hw), total / total.max())
    # every gain negative: the final division by the (negative) maximum flips the sign, as theirs does
    neg = aise_map([(0.1, ([(0.5, 0.5)], [-2.0]))], hw)
    np.testing.assert_allclose(neg, gaussian_mask((0.5, 0.5), 0.1, hw) / gaussian_mask((0.5, 0.5), 0.1, hw).min())


def test_aise_equals_its_definition_and_finds_the_planted_evidence(tmp_path):
    import onnxruntime as ort
    from scipy.optimize import direct
    path = _planted_model(tmp_path)
    ex = onnxcam.Explainer(path, preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    x = _image()
    res = ex.explain(x, "aise", target=0, iterations=12)
    ours = res.raw["input"][0]

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cols, rows = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE))

    def prob(img):
        logits = sess.run(None, {"x": img.astype(np.float32)})[0][0].astype(np.float64)
        e = np.exp(logits - logits.max())
        return e[0] / e.sum()

    def mask(c, width):
        g = np.exp(-((cols - c[0]) ** 2 + (rows - c[1]) ** 2) / (2 * width ** 2))
        return g / g.max()
    total = np.zeros((SIZE, SIZE))
    for width in AISE_WIDTHS:
        seen = []

        def loss(c):
            m = mask(c, width).astype(np.float32)
            seen.append((mask(c, width), prob(x * m) - prob(x * (1 - m))))
            return -seen[-1][1]
        direct(loss, [(0, 1), (0, 1)], eps=0.1, maxfun=12, locally_biased=False)
        kde = sum(m * g for m, g in seen[:12])
        total += kde / kde.max() if kde.max() > 0 else kde
    want = total / total.max()
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)

    peak = np.unravel_index(np.argmax(ours), ours.shape)
    assert BLOCK[0].start <= peak[0] < BLOCK[0].stop and BLOCK[1].start <= peak[1] < BLOCK[1].stop, peak
    again = ex.explain(x, "aise", target=0, iterations=12).raw["input"][0]
    np.testing.assert_array_equal(ours, again)   # DIRECT draws nothing at random


def test_bad_aise_option_is_one_line(tmp_path):
    ex = onnxcam.Explainer(_planted_model(tmp_path))
    with pytest.raises(OnnxCamError, match="option iterations") as e:
        ex.explain(_image(), "aise", iterations=0)
    assert "\n" not in str(e.value)


def test_evaluate_covers_deeplift_and_aise(tmp_path, capsys):
    import json

    from conftest import photo_paths
    from onnxcam.cli import main
    code = main(["evaluate", "models/efficientnet_lite0/model.onnx", str(photo_paths(1)[0]), "--methods",
                 "deeplift,aise", "--iterations", "4", "--steps", "4", "--no-road", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    ev = json.loads((tmp_path / "evaluation.json").read_text())
    assert ev["methods"]["aise"]["options"] == {"iterations": 4} and ev["methods"]["deeplift"]["options"] == {}
    for method in ("deeplift", "aise"):
        row = ev["methods"][method]["layers"]["input"]
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
