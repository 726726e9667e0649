"""What the deployable explainer costs: one run of the exported gradcam / hirescam / relevancecam
model (forward, backward to the layer, head, resize, min-max: all in onnxruntime) divided by one
plain forward of the bundled model, and `Explainer.explain` (same graph, numpy/OpenCV head) divided
by the exported run; and the largest difference between the two heatmaps. Same machine, same run,
best of --repeat.

    python tests/benchmarks/bench_export.py [--repeat 5]
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from benchtools import PHOTOS, ROOT, best_time, parse_args, plain_forward, print_table

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def main():
    args = parse_args(__doc__, repeat=5)
    ex = onnxcam.Explainer(LITE0)
    x1 = onnxcam.load_images(PHOTOS[:1], ex.preprocess)
    rows = []
    for batch in (1, 16):
        xb = np.repeat(x1, batch, axis=0)
        forward = plain_forward(LITE0, xb, args.repeat)
        for method in ("gradcam", "hirescam", "relevancecam"):
            model = onnxcam.build_explainer_model(ex, method)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = {ex.model.input_name: xb}
            sess.run(None, feeds)
            exported = best_time(lambda: sess.run(None, feeds), args.repeat)
            res = ex.explain(xb, method=method)
            python = best_time(lambda: ex.explain(xb, method=method), args.repeat)
            diff = np.abs(sess.run(["heatmap"], feeds)[0] - res.maps[ex.model.auto_layer.name]).max()
            rows.append([method, batch, f"{exported / forward:.2f}", f"{python / exported:.2f}", f"{diff:.1e}"])
    print_table("Exported explainer on EfficientNet-Lite0 (auto layer), CPU",
                ["method", "batch", "exported run ÷ plain forward", "Explainer.explain ÷ exported run",
                 "largest heatmap difference to explain"], rows)


if __name__ == "__main__":
    main()
