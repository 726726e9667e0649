"""The agreement figures quoted in README, printed as tables from one run:

1. Pearson correlation of static-INT8 QDQ maps with FP32 maps of the bundled model, per photo and
   gradient method (the INT8 build is made by converters/quantize.py, calibrated on the bundled
   photos; the figures depend on the quantizer, so the tests print nothing of it and assert the
   straight-through gradients instead).
2. Cascading-randomization sanity check on the bundled model: mean Spearman / SSIM of the maps to
   the originals with the top k parametric layers re-initialized.

    python tests/benchmarks/agreement_figures.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchtools import PHOTOS, ROOT, parse_args, print_table

import onnxcam  # noqa: E402
from onnxcam.metrics import cascading_randomization  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def main():
    parse_args(__doc__)
    from quantize import to_int8_static

    ref = onnxcam.Explainer(LITE0)
    int8 = onnxcam.Explainer(to_int8_static(LITE0, Path(tempfile.mkdtemp()) / "int8.onnx"),
                             preprocess=ref.preprocess)
    photos = [p for p in PHOTOS if p.stem in ("astronaut", "chelsea", "coffee", "rocket")]
    x = onnxcam.load_images(photos, ref.preprocess)
    rows = []
    for method in ("gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigengradcam"):
        a = ref.explain(x, method=method)
        b = int8.explain(x, method=method, target=a.target)
        ma, mb = next(iter(a.maps.values())), next(iter(b.maps.values()))
        rows.append([method] + [f"{np.corrcoef(ma[i].ravel(), mb[i].ravel())[0, 1]:.3f}" for i in range(len(x))])
    print_table("Pearson of static-INT8 QDQ maps with FP32 maps (auto layer)",
                ["method"] + [p.stem for p in photos], rows)

    pair = onnxcam.load_images([p for p in PHOTOS if p.stem in ("chelsea", "coffee")], ref.preprocess)
    rows = []
    for method, options, steps in (("gradcam", {}, [1, 2, 8, 32, 50]), ("scorecam", {"top_k": 128}, [1, 8, 50])):
        out = cascading_randomization(ref, pair, method, steps=steps, **options)
        for r in out["steps"]:
            rows.append([method + (" (top-128)" if options else ""), r["randomized_layers"],
                         f"{r['spearman']:.2f}", f"{r['ssim']:.2f}"])
    print_table(f"Sanity check, chelsea + coffee, {out['parametric_layers']} parametric layers",
                ["method", "top layers randomized", "Spearman", "SSIM"], rows)


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")
    main()
