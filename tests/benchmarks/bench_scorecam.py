"""Score-CAM benchmark: one run prints a table of ratios on this machine.

1. Score-CAM time / plain onnxruntime inference of C images (C = channels at the layer) at the best
   batch size: what the masked-batch graph costs over the floor (goal <= 1.15; below 1.0 when
   constant channels are skipped).
2. onnxcam Score-CAM vs pytorch-grad-cam ScoreCAM (batch_size 64) on the same ResNet-18 and layer,
   CPU, same threads (goal: >= 2x faster).
3. Peak memory of a Score-CAM run at the default memory budget.

    python tests/benchmarks/bench_scorecam.py [--images 2] [--repeat 2]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchtools import ROOT, best_time, peak_rss_mb, plain_inference_per_image, print_table

import onnxcam  # noqa: E402


def scorecam_vs_floor(path, label, layer_pick, x, repeat):
    ex = onnxcam.Explainer(path)
    layer = layer_pick(ex)
    ex.explain(x[:1], method="scorecam", layers=layer.name, top_k=8)  # warm the sessions
    rows = []
    for method in ("scorecam", "scorecam-pgc"):
        runs = {}

        def run():
            runs["res"] = ex.explain(x, method=method, layers=layer.name)
        t = best_time(run, repeat)
        per_image, batch = plain_inference_per_image(path, x[:1], repeat=repeat)
        floor = per_image * layer.channels * len(x)
        w = runs["res"].weights[layer.name]
        scored = int((w != 0).sum())
        rows.append([label, method, f"{layer.channels}x{layer.height}x{layer.width}",
                     f"{scored / len(x):.0f}", batch, f"{t / floor:.2f}"])
    return rows


def last_in(prefix):
    return lambda ex: max((l for l in ex.layers if l.name.startswith(prefix)), key=lambda l: l.depth)


def versus_pgc(path, net, x, repeat):
    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ex = onnxcam.Explainer(path)
    layer = last_in("/layer4/")(ex)
    targets = ex.forward(x)[0].argmax(1)
    cam = ScoreCAM(model=net, target_layers=[net.layer4])
    cam.batch_size = 64
    xt = torch.from_numpy(x)
    tt = [ClassifierOutputTarget(int(t)) for t in targets]
    import os
    import sys
    devnull = open(os.devnull, "w")

    def run_pgc():
        old, sys.stderr = sys.stderr, devnull  # its tqdm bar would flood the table
        try:
            cam(input_tensor=xt, targets=tt)
        finally:
            sys.stderr = old
    t_pgc = best_time(run_pgc, repeat)
    rows = []
    for method in ("scorecam-pgc", "scorecam"):
        t = best_time(lambda: ex.explain(x, method=method, layers=layer.name, target=targets), repeat)
        rows.append(["resnet18 layer4", method, f"{t_pgc / t:.2f}x"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import torch
    from export_torchvision import export

    tmp = Path(tempfile.mkdtemp(prefix="onnxcam_bench_"))
    net, r18 = export("resnet18", tmp / "resnet18.onnx", size=224, seed=0, verify=False)
    lite0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"
    photos = sorted((ROOT / "models" / "photos").glob("*.jpg"))[: args.images]
    spec = onnxcam.Explainer(lite0).preprocess
    x = onnxcam.load_images(photos, spec)
    print(f"onnxruntime threads: default; torch threads: {torch.get_num_threads()}; images: {len(x)}")

    rows = scorecam_vs_floor(lite0, "efficientnet-lite0", lambda ex: ex.model.auto_layer, x, args.repeat)
    rows += scorecam_vs_floor(r18, "resnet18", last_in("/layer4/"), x, args.repeat)
    print_table("Score-CAM time / plain inference of C images per image at its best batch "
                "(goal <= 1.15)", ["model", "method", "layer C x h x w", "channels scored / image",
                                   "best plain batch", "ratio"], rows)

    ort_per_image, batch = plain_inference_per_image(r18, x[:1], batches=(32,), repeat=args.repeat)
    xt = torch.from_numpy(np.repeat(x[:1], 32, axis=0))
    with torch.no_grad():
        torch_per_image = best_time(lambda: net(xt), args.repeat) / 32
    rows = [["resnet18 plain forward, batch 32", "(no explanation)", f"{torch_per_image / ort_per_image:.2f}x"]]
    rows += versus_pgc(r18, net, x, args.repeat)
    print_table("pytorch-grad-cam ScoreCAM (batch_size 64) time / onnxcam time, same CPU "
                "(goal >= 2x)", ["model/layer", "onnxcam method", "speed-up"], rows)

    print_memory(lite0, photos)


def print_memory(lite0, photos):
    base = peak_rss_mb(f"import onnxcam; ex = onnxcam.Explainer({str(lite0)!r})")
    run = peak_rss_mb(f"import onnxcam; ex = onnxcam.Explainer({str(lite0)!r}); "
                      f"x = onnxcam.load_images([{str(photos[0])!r}], ex.preprocess); "
                      "ex.explain(x, method='scorecam')")
    print_table("Peak memory, efficientnet-lite0 Score-CAM at the default budget (1024 MB)",
                ["process", "peak RSS MB"], [["load model only", f"{base:.0f}"],
                                             ["load + Score-CAM of one image", f"{run:.0f}"],
                                             ["Score-CAM increment", f"{run - base:.0f}"]])


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
