"""Metrics benchmark: Deletion + Insertion with 50 steps for one image and one method, time / the
same number of plain onnxruntime forwards at the best batch size (goal <= 1.1).

    python tests/benchmarks/bench_metrics.py [--repeat 3]
"""
from __future__ import annotations

import os
import sys

from benchtools import PHOTOS, ROOT, best_time, parse_args, plain_inference_per_image, print_table

import onnxcam  # noqa: E402
from onnxcam.metrics import deletion_insertion  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def main():
    args = parse_args(__doc__)
    ex = onnxcam.Explainer(LITE0)
    x = onnxcam.load_images(PHOTOS[1:2], ex.preprocess)
    res = ex.explain(x, method="gradcam")
    maps = next(iter(res.maps.values()))
    steps = 50
    deletion_insertion(ex, x, maps, res.target, steps=steps)
    t = best_time(lambda: deletion_insertion(ex, x, maps, res.target, steps=steps), args.repeat)
    per_image, batch = plain_inference_per_image(LITE0, x, repeat=args.repeat)
    forwards = 2 * (steps + 1)
    print_table("Deletion + Insertion (50 steps, one image, Grad-CAM map) / plain inference of the same "
                "number of images at the best batch (goal <= 1.1)",
                ["model", "forwards", "best plain batch", "ratio"],
                [["efficientnet-lite0", forwards, batch, f"{t / (per_image * forwards):.2f}"]])


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")
    main()
