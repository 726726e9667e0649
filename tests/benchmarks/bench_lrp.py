"""LRP benchmark: one run prints ratios measured side by side on this machine.

1. Zennit EpsilonPlusFlat input relevance (ResNetCanonizer) time / onnxcam time, same ResNet-50,
   same images, CPU (goal >= 2x).
2. Relevance-CAM at every catalog layer of the bundled EfficientNet-Lite0 in one run / one plain
   onnxruntime forward of the same batch.
3. SR map post-processing (context-aware saliency) time for one 224x224 image, and the ratio to a
   plain forward.

    python tests/benchmarks/bench_lrp.py [--repeat 3]
"""
from __future__ import annotations

import os
import sys

import numpy as np

from benchtools import PHOTOS, ROOT, best_time, export_resnet50, parse_args, plain_forward, print_table

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def main():
    args = parse_args(__doc__)
    import torch
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer
    from export_torchvision import build

    r50 = export_resnet50()
    photos = PHOTOS
    x_all = onnxcam.load_images(photos, onnxcam.PreprocessSpec())
    rows = []
    ex = onnxcam.Explainer(r50)
    net = build("resnet50", seed=0)
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    for n in (1, 8):
        xb = np.ascontiguousarray(np.resize(x_all, (n,) + x_all.shape[1:]))
        res = ex.explain(xb, method="lrp")
        t_ours = best_time(lambda: ex.explain(xb, method="lrp"), args.repeat)
        onehot = torch.zeros(n, 1000)
        onehot[torch.arange(n), torch.from_numpy(res.target)] = 1.0

        def zennit():
            xt = torch.from_numpy(xb).requires_grad_(True)
            with EpsilonPlusFlat(canonizers=[ResNetCanonizer()]).context(net) as modified:
                out = modified(xt)
                torch.autograd.grad(out, xt, grad_outputs=out * onehot)
        t_z = best_time(zennit, args.repeat)
        rows.append(["resnet50 input relevance", n, f"{t_z / t_ours:.1f}x"])
    print_table("Zennit EpsilonPlusFlat time / onnxcam lrp time, same CPU (goal >= 2x)",
                ["what", "batch", "speed-up"], rows)

    lite = onnxcam.Explainer(LITE0)
    x = onnxcam.load_images(photos[:1], lite.preprocess)
    n_layers = len([l for l in lite.layers if l.preferred])
    lite.explain(x, method="relevancecam", layers="all")
    t_rc = best_time(lambda: lite.explain(x, method="relevancecam", layers="all"), args.repeat)
    t_fwd = plain_forward(LITE0, x, args.repeat)
    lite.explain(x, method="srmap")
    t_sr = best_time(lambda: lite.explain(x, method="srmap"), args.repeat)
    t_lrp = best_time(lambda: lite.explain(x, method="lrp", composite="sr"), args.repeat)
    print_table("EfficientNet-Lite0, one 224x224 image: time / one plain onnxruntime forward",
                ["what", "ratio"],
                [[f"Relevance-CAM at all {n_layers} layers, one run", f"{t_rc / t_fwd:.1f}"],
                 ["SR map (LRP + context-aware saliency)", f"{t_sr / t_fwd:.1f}"],
                 ["  of which context-aware saliency", f"{(t_sr - t_lrp) / t_fwd:.1f}"]])
    print(f"\ncontext-aware saliency of one 224x224 image: {t_sr - t_lrp:.2f} s on this machine")


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")
    main()
