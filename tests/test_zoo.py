"""The fast tier of the CNN zoo sweep (tests/zoo/sweep.py): the families that needed new rules or the
intake fix, at a small input: Grad-CAM, LRP, Relevance-CAM and the SR map run, dS/dA at the auto layer
equals autograd (the full sweep runs every method).

  * ResNeSt (split attention: AveragePool behind a computed Reshape, dynamic channels);
  * EfficientNetV2 with TF "SAME" padding through TorchScript (pads computed from Shape(x));
  * a GroupNorm + weight-standardized ResNetV2 (BiT, one block per stage), whose GroupNorm the
    TorchScript exporter writes as Reshape -> InstanceNormalization -> Reshape(Shape(x));
  * a hand-built SAME Pad read from Shape(x)[-2:] (the intake fix without torch).
The full sweep (40 families x 2 exporters) is a script: `python tests/zoo/sweep.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))
import sweep  # noqa: E402

import timm  # noqa: E402,F401 - test extras: a broken install must fail

# (family, exporter, builder spec or None for the family's own, input size)
FAST = [("ResNeSt", "torchscript", None), ("EfficientNetV2 (TF SAME)", "torchscript", None),
        ("ResNetV2/BiT (GroupNorm)", "torchscript", ("timm:resnetv2_50x1_bit|shallow", 64))]
# one gradient method, the two relevance recipes and the contrastive SR map: every backward path
FAST_METHODS = ["gradcam", "lrp", "relevancecam", "srmap"]


@pytest.mark.parametrize("family,exporter,spec", FAST, ids=[f"{f.split()[0]}-{e}" for f, e, _ in FAST])
def test_family_explains_and_matches_autograd(family, exporter, spec, tmp_path):
    row = sweep.run_one(family, exporter, tmp_path, spec=spec, methods=FAST_METHODS)
    assert isinstance(row.get("catalog"), int) and row["catalog"] > 0, row.get("catalog", row.get("export"))
    failed = {m: v for m, v in row["methods"].items() if v != "✓"}
    assert not failed, failed
    # gates aligned to onnxruntime's decisions, so the backward passes compare exactly
    assert row["flips"] <= 10, f"{row['flips']} ReLU units differ between torch and onnxruntime"
    assert row.get("parity_err", 1.0) <= sweep.PARITY_TOL, row["parity"]


def same_padding_cnn(size=16, classes=4, seed=0):
    """Conv behind a TF-style SAME Pad whose pads are computed from Shape(x) at run time, as
    timm's tf_* models export through TorchScript: pad = clip((ceil(H / s) - 1) s + k - H, 0) with
    H read as Shape(x)[-2] (onnxruntime folds Shape reads with positive indices, not these)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    floats = {"w": rng.normal(0, 0.5, (8, 3, 3, 3)), "wf": rng.normal(0, 0.3, (classes, 8)),
              "bf": np.zeros(classes), "two": np.array(2.0), "one": np.array(1.0), "k": np.array(3.0),
              "zero": np.array(0.0)}
    ints = {"i2": np.array(-2), "i3": np.array(-1), "axis0": np.array([0]), "zz": np.zeros(2)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in floats.items()]
    inits += [numpy_helper.from_array(v.astype(np.int64), k) for k, v in ints.items()]
    node = helper.make_node
    nodes = [node("Shape", ["x"], ["s"])]
    for ax in ("2", "3"):
        steps = [("Gather", ["s", f"i{ax}"], "d"), ("Cast", ["d"], "f"), ("Div", ["f", "two"], "q"),
                 ("Ceil", ["q"], "c"), ("Sub", ["c", "one"], "m"), ("Mul", ["m", "two"], "t"),
                 ("Add", ["t", "k"], "u"), ("Sub", ["u", "f"], "v"), ("Clip", ["v", "zero"], "p"),
                 ("Div", ["p", "two"], "h"), ("Floor", ["h"], "lo"), ("Sub", ["p", "lo"], "hi")]
        local = {"s", f"i{ax}", "two", "one", "k", "zero"}
        for op, inputs, out in steps:
            attrs = {"to": TensorProto.FLOAT} if op == "Cast" else {}
            nodes.append(node(op, [i if i in local else i + ax for i in inputs], [out + ax], **attrs))
        for side in ("lo", "hi"):
            nodes += [node("Cast", [side + ax], [side + ax + "i"], to=TensorProto.INT64),
                      node("Unsqueeze", [side + ax + "i", "axis0"], [side + ax + "u"])]
    nodes += [node("Concat", ["zz", "lo2u", "lo3u", "zz", "hi2u", "hi3u"], ["pads"], axis=0),
              node("Pad", ["x", "pads"], ["xp"]),
              node("Conv", ["xp", "w"], ["conv"], strides=[2, 2]), node("Relu", ["conv"], ["feat"]),
              node("GlobalAveragePool", ["feat"], ["gap"]), node("Flatten", ["gap"], ["flat"]),
              node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1)]
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    graph = helper.make_graph(nodes, "same_pad", [image], [logits], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_runtime_same_padding_leaves_shapes_known():
    """The shapes behind a Pad computed from Shape(x) are known after intake, so the conv after it
    is in the catalog and gradients pass the Pad (the empty catalog of tf_efficientnetv2_b0)."""
    import numpy as np
    import onnxcam

    ex = onnxcam.Explainer(same_padding_cnn())
    assert [layer.shape for layer in ex.layers if layer.name == "feat"] == [(8, 8, 8)]
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    result = ex.explain(x, "gradcam", layers="feat")
    assert np.all(np.isfinite(result.maps["feat"])) and np.ptp(result.maps["feat"]) > 0
