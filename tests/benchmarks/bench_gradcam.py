"""Grad-CAM benchmark: one run prints tables of ratios measured side by side on this machine.

1. pytorch-grad-cam GradCAM time / onnxcam Grad-CAM time, same CPU, model, layer and images:
   ResNet-50 last block and layer2, EfficientNet-Lite0 head; batch 1 and 16 (goal >= 4x at the
   last block).
2. onnxcam Grad-CAM time / one plain onnxruntime forward of the same batch (goal <= 1.3 at the
   last block): what the appended backward costs.
3. Peak memory of Grad-CAM at batch 16 (onnxcam and pytorch-grad-cam, separate processes).

    python tests/benchmarks/bench_gradcam.py [--repeat 3]
"""
from __future__ import annotations

import os
import sys

import numpy as np

from benchtools import (PHOTOS, ROOT, best_time, export_resnet50, parse_args, peak_rss_mb, plain_forward,
                        print_table)

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def batch_of(x, n):
    return np.ascontiguousarray(np.resize(x, (n,) + x.shape[1:]))


def lite0_torch():
    from export_efficientnet_lite0 import load_model
    return load_model()


def cases(r50_path):
    """(label, onnx path, onnx layer picker, torch model factory, torch layer picker)."""
    from export_torchvision import build

    def last(prefix):
        return lambda ex: max((l for l in ex.layers if l.name.startswith(prefix)), key=lambda l: l.depth)
    return [
        ("resnet50 layer4 (last block)", r50_path, last("/layer4/"), lambda: build("resnet50", seed=0),
         lambda net: net.layer4),
        ("resnet50 layer2", r50_path, last("/layer2/"), lambda: build("resnet50", seed=0),
         lambda net: net.layer2),
        # pytorch-grad-cam hooks a module; the head's ReLU6 module is shared with the stem, so it
        # gets the head BatchNorm (same position, same cost)
        ("efficientnet-lite0 head", LITE0, lambda ex: ex.model.auto_layer, lite0_torch,
         lambda net: net._bn1),
    ]


def time_pgc(net, layer, xb, targets, repeat):
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=net, target_layers=[layer])
    xt = torch.from_numpy(xb)
    tt = [ClassifierOutputTarget(int(t)) for t in targets]
    return best_time(lambda: cam(input_tensor=xt, targets=tt), repeat)


def main():
    args = parse_args(__doc__)
    r50 = export_resnet50()
    photos = PHOTOS
    x = onnxcam.load_images(photos, onnxcam.Explainer(LITE0).preprocess)

    memory = print_memory(r50, photos)
    import torch
    print(f"torch threads {torch.get_num_threads()}, onnxruntime default threads, CPU only")
    rows_pgc, rows_fwd = [], []
    for label, path, pick, make_net, torch_layer in cases(r50):
        ex = onnxcam.Explainer(path)
        layer = pick(ex)
        net = make_net()
        for n in (1, 16):
            xb = batch_of(x, n)
            res = ex.explain(xb, method="gradcam", layers=layer.name)  # builds and warms the session
            t_ours = best_time(lambda: ex.explain(xb, method="gradcam", layers=layer.name), args.repeat)
            t_pgc = time_pgc(net, torch_layer(net), xb, res.target, args.repeat)
            t_fwd = plain_forward(path, xb, args.repeat)
            rows_pgc.append([label, n, f"{t_pgc / t_ours:.1f}x"])
            rows_fwd.append([label, n, f"{t_ours / t_fwd:.2f}"])
    print_table("pytorch-grad-cam GradCAM time / onnxcam Grad-CAM time (goal >= 4x at the last block)",
                ["model / layer", "batch", "speed-up"], rows_pgc)
    print_table("onnxcam Grad-CAM time / one plain onnxruntime forward of the batch (goal <= 1.3)",
                ["model / layer", "batch", "ratio"], rows_fwd)
    print_table("Peak memory, ResNet-50 layer4 Grad-CAM, batch 16 (fresh process each)",
                ["process", "peak RSS MB"], memory)


def print_memory(r50, photos):
    load = (f"import sys; sys.path[:0] = [{str(ROOT / 'converters')!r}]; import numpy as np, onnxcam; "
            f"x = onnxcam.load_images({[str(p) for p in photos]!r}, onnxcam.PreprocessSpec()); "
            "xb = np.ascontiguousarray(np.resize(x, (16,) + x.shape[1:])); ")
    ours = peak_rss_mb(load + f"ex = onnxcam.Explainer({str(r50)!r}); "
                       "layer = max((l for l in ex.layers if l.name.startswith('/layer4/')), key=lambda l: l.depth); "
                       "ex.explain(xb, method='gradcam', layers=layer.name)")
    pgc = peak_rss_mb(load + "import torch; from export_torchvision import build; "
                      "from pytorch_grad_cam import GradCAM; net = build('resnet50', seed=0); "
                      "GradCAM(model=net, target_layers=[net.layer4])(input_tensor=torch.from_numpy(xb), targets=None)")
    return [["onnxcam", f"{ours:.0f}"], ["pytorch-grad-cam", f"{pgc:.0f}"]]


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")  # keep tqdm bars and exporter warnings out of the tables
    main()
