"""Near-kink counts (onnxcam/graph/kinks.py): gate units between the explained layer and the score
whose input lies within float32 rounding of the gate's threshold are counted per image, reported
in Result.near_kinks and the notes; units clear of every threshold count 0.

The net passes the image unchanged (1x1 identity conv) into the gate, so each gate input is a
value the test chose: exactly on the threshold, 1e-9 from it (both well inside 64 ulps of the
tensor's magnitude, 1 here), or at least 0.25 away.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam.explainer import kink_notes

SIZE = 8


def gate_net(gate: str, merge_batch: bool = False) -> onnx.ModelProto:
    """x -> Conv1x1(identity) = 'pre' -> gate -> Conv1x1(3->4) = 'feat' -> GAP -> FC(5).
    merge_batch: the gate acts on 'pre' reshaped to [N*3, 8, 8] (and back)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.eye(3, dtype=np.float32)[:, :, None, None], "eye"),
             numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.5, (5, 4)).astype(np.float32), "wf"),
             numpy_helper.from_array(np.zeros(5, np.float32), "bf"),
             numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")]
    gate_node = {"Relu": helper.make_node("Relu", ["pre"], ["gated"], name="gate"),
                 "Clip": helper.make_node("Clip", ["pre", "lo", "hi"], ["gated"], name="gate"),
                 "LeakyRelu": helper.make_node("LeakyRelu", ["pre"], ["gated"], name="gate", alpha=0.1),
                 "HardSwish": helper.make_node("HardSwish", ["pre"], ["gated"], name="gate")}[gate]
    inits += [numpy_helper.from_array(np.array([-1, SIZE, SIZE], np.int64), "merged"),
              numpy_helper.from_array(np.array([-1, 3, SIZE, SIZE], np.int64), "split")]
    into = [helper.make_node("Reshape", ["pre", "merged"], ["pre_merged"], name="merge"),
            helper.make_node("Relu", ["pre_merged"], ["gated_merged"], name="gate"),
            helper.make_node("Reshape", ["gated_merged", "split"], ["gated"], name="split")]
    nodes = [helper.make_node("Conv", ["x", "eye"], ["pre"], name="identity"),
             *(into if merge_batch else [gate_node]),
             helper.make_node("Conv", ["gated", "w2"], ["feat"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["feat"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "gate_net",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def clear_input(n: int, thresholds: list[float], scale: float) -> np.ndarray:
    """Values at least 0.25 from every threshold, magnitude up to `scale`."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-scale, scale, (n, 3, SIZE, SIZE)).astype(np.float32)
    for t in thresholds:
        close = np.abs(x - t) < 0.25
        x[close] = t + 0.25 * np.where(x[close] >= t, 1, -1) + 0.1 * np.sign(x[close] - t + 1e-3)
    assert min(np.abs(x - t).min() for t in thresholds) >= 0.25
    return x


# gate, its thresholds, and the magnitude of the test input (the tolerance scales with max|x|)
CASES = {"Relu": ([0.0], 1.0), "LeakyRelu": ([0.0], 1.0), "Clip": ([0.0, 6.0], 8.0),
         "HardSwish": ([-3.0, 3.0], 4.0)}


@pytest.mark.parametrize("gate", list(CASES))
def test_units_at_or_near_threshold_are_counted_per_image(gate):
    thresholds, scale = CASES[gate]
    ex = onnxcam.Explainer(gate_net(gate), preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    x = clear_input(3, thresholds, scale)
    t = thresholds[-1]
    x[0, 0, 1, 1] = t                    # exactly on the threshold: one ulp decides the branch
    x[0, 1, 2, 3] = t + np.float32(1e-6) * max(abs(t), 1.0)   # a few ulps away: still within rounding
    x[0, 2, 4, 4] = t - np.float32(1e-6) * max(abs(t), 1.0)
    x[2, 0, 0, 0] = np.nextafter(np.float32(t), np.float32(np.inf))  # image 1 stays clear
    res = ex.explain(x, "gradcam", layers=["pre"])
    np.testing.assert_array_equal(res.near_kinks["pre"], [3, 0, 1])
    note = next(n for n in res.notes if n.startswith("gradcam at pre:"))
    assert "3 in image 0" in note and "1 in image 2" in note and "image 1" not in note


def test_relu_input_of_1e_9_counts_and_clear_inputs_do_not():
    ex = onnxcam.Explainer(gate_net("Relu"), preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    x = clear_input(2, [0.0], 1.0)
    x[1, 2, 5, 5] = 1e-9
    res = ex.explain(x, "hirescam", layers=["pre"])
    np.testing.assert_array_equal(res.near_kinks["pre"], [0, 1])
    assert not any("image 0" in n for n in res.notes if n.startswith("hirescam at"))


def test_layer_after_every_gate_counts_nothing_and_gradient_free_methods_report_nothing():
    ex = onnxcam.Explainer(gate_net("Relu"), preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    x = clear_input(1, [0.0], 1.0)
    x[0, 0, 0, 0] = 0.0
    res = ex.explain(x, "gradcam", layers=["feat", "pre"])
    assert res.near_kinks["feat"].tolist() == [0] and res.near_kinks["pre"].tolist() == [1]
    assert ex.explain(x, "scorecam", layers=["pre"]).near_kinks == {}


def test_notes_name_a_few_images_and_how_many_more():
    notes = kink_notes("gradcam", {"L": np.array([0, 2, 0, 1, 5, 7]), "M": np.zeros(6, np.int64)})
    assert notes == ["gradcam at L: gate units (ReLU/Clip/...) within float32 rounding of their threshold: "
                     "2 in image 1, 1 in image 3, 5 in image 4 and 1 more images (the map may differ "
                     "between runtimes there)"]


def test_gate_on_a_tensor_that_merges_the_batch_is_skipped_not_miscounted():
    ex = onnxcam.Explainer(gate_net("Relu", merge_batch=True), preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]})
    x = clear_input(2, [0.0], 1.0)
    x[1, 0, 0, 0] = 0.0
    res = ex.explain(x, "gradcam", layers=["pre"])
    assert res.near_kinks["pre"].tolist() == [0, 0]   # no per-image axis to count along


def test_cli_json_and_npz_carry_the_counts(tmp_path, capsys):
    import json

    from conftest import photo_paths
    from onnxcam.cli import main

    model = tmp_path / "gate.onnx"
    onnx.save(gate_net("Relu"), str(model))
    images = [str(p) for p in photo_paths(2)]
    assert main(["explain", str(model), *images, "--method", "gradcam", "--layer", "pre",
                 "--out", str(tmp_path / "o"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    counts = summary["near_kinks"]["pre"]
    assert len(counts) == 2 and all(isinstance(c, int) and c >= 0 for c in counts)
    for path, count in zip(sorted((tmp_path / "o").glob("*.npz")), counts):
        assert int(np.load(path)["near_kinks_0"]) == count
