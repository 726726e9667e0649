"""The fast tier of the CNN zoo sweep (tests/zoo/sweep.py): the families that needed new rules or the
intake fix, at a small input, every method, dS/dA at the auto layer equal to autograd.

  * ResNeSt (split attention: AveragePool behind a computed Reshape, dynamic channels);
  * EfficientNetV2 with TF "SAME" padding through TorchScript (pads computed from Shape(x));
  * ConvNeXt V2 (GRN: ReduceL2 / a norm over space, LayerNorm), through dynamo;
  * a GroupNorm + weight-standardized ResNetV2 (BiT).
The full sweep (40 families x 2 exporters) is a script: `python tests/zoo/sweep.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))
import sweep  # noqa: E402

import timm  # noqa: E402,F401 - test extras: a broken install must fail

FAST = [("ResNeSt", "torchscript"), ("EfficientNetV2 (TF SAME)", "torchscript"),
        ("ConvNeXt V2 (GRN)", "dynamo"), ("ResNetV2/BiT (GroupNorm)", "torchscript")]


@pytest.mark.parametrize("family,exporter", FAST, ids=[f"{f.split()[0]}-{e}" for f, e in FAST])
def test_family_explains_with_every_method(family, exporter, tmp_path):
    row = sweep.run_one(family, exporter, tmp_path)
    assert isinstance(row.get("catalog"), int) and row["catalog"] > 0, row.get("catalog", row.get("export"))
    failed = {m: v for m, v in row["methods"].items() if v != "✓"}
    assert not failed, failed
    # gates aligned to onnxruntime's decisions, so the backward passes compare exactly
    assert row["flips"] <= 10, f"{row['flips']} ReLU units differ between torch and onnxruntime"
    assert row.get("parity_err", 1.0) <= sweep.PARITY_TOL, row["parity"]
