"""Score-CAM benchmark: one run prints a table of ratios on this machine.

1. Score-CAM time / plain onnxruntime inference of C images (C = channels at the layer) at the best
   batch size: what the masked-batch graph costs over the floor (issue 15's goal <= 1.0; below 1.0
   where constant or duplicate masks are skipped). The two are timed in turns (best of --repeat
   each), so a busy spell on a shared machine slows both sides of the ratio. Beside it, the masked
   graph / the plain model at the masked graph's batch: the share the mask work itself adds.
2. onnxcam Score-CAM vs pytorch-grad-cam ScoreCAM (batch_size 64) on the same ResNet-18 and layer,
   CPU, same threads (goal: >= 2x faster).
3. Faster Score-CAM (`top_k`): Pearson of the top-k map to the full map, per k, and its time.
4. Peak memory of a Score-CAM run at the default memory budget.

Every timed row names the execution provider that actually ran it.

    python tests/benchmarks/bench_scorecam.py [--images 2] [--repeat 2] [--providers CUDAExecutionProvider]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchtools import (ROOT, add_providers, best_time, peak_rss_mb, plain_inference_per_image, plain_session,
                        print_table, providers_of)

import onnxcam  # noqa: E402


def scorecam_vs_floor(path, label, layer_pick, x, repeat, providers, batches=(1, 8, 16, 32, 64)):
    """Score-CAM of x and the floor (plain inference of C images at each batch) timed in turns, best
    of `repeat` turns each: on a shared machine a slow spell then hits both sides of the ratio."""
    ex = onnxcam.Explainer(path, providers=providers)
    layer = layer_pick(ex)
    ex.explain(x[:1], method="scorecam", layers=layer.name, top_k=8)  # warm the sessions
    sess, name = plain_session(path, providers)
    feeds = {b: sess.to_device(np.repeat(x[:1], b, axis=0)) for b in batches}
    for b in batches:
        sess.run({name: feeds[b]})
    rows = []
    for method in ("scorecam", "scorecam-pgc"):
        runs, best, per_image = {}, float("inf"), {b: float("inf") for b in batches}
        for _ in range(repeat):
            t = time.perf_counter()
            runs["res"] = ex.explain(x, method=method, layers=layer.name)
            best = min(best, time.perf_counter() - t)
            for b in batches:
                per_image[b] = min(per_image[b], best_time(lambda: sess.run({name: feeds[b]}), 1) / b)
        batch = min(batches, key=per_image.get)
        floor = per_image[batch] * layer.channels * len(x)
        w = runs["res"].weights[layer.name]
        scored = int((w != 0).sum())
        rows.append([label, method, f"{layer.channels}x{layer.height}x{layer.width}",
                     f"{scored / len(x):.0f}", batch, f"{best / floor:.2f}",
                     f"{mask_share(ex, method, layer, x, sess, name, repeat):.3f}", runs["res"].provider])
    return rows


def mask_share(ex, method, layer, x, sess, name, repeat) -> float:
    """Score-CAM's masked graph (upsample, min-max, multiply, then the model) / the plain model, at
    the masked graph's own batch on the same device, timed in turns: what the mask work adds to the
    forwards that Score-CAM cannot skip."""
    from onnxcam.graph.masking import IMAGE, MAPS

    key = ("masked", method == "scorecam-pgc", 1e-8 if method == "scorecam-pgc" else 0.0, False)
    masked, _ = ex.sessions.get(key, None)
    step = ex._batch(key)
    maps = masked.to_device(np.random.default_rng(0).random((step, 1, layer.height, layer.width), np.float32))
    image, batch = masked.to_device(x[:1]), sess.to_device(np.repeat(x[:1], step, axis=0))
    t_masked = t_plain = float("inf")
    for _ in range(repeat):
        t_masked = min(t_masked, best_time(lambda: masked.run({IMAGE: image, MAPS: maps}), 1))
        t_plain = min(t_plain, best_time(lambda: sess.run({name: batch}), 1))
    return t_masked / t_plain


def topk_fidelity(path, label, layer_pick, x, ks, repeat, providers):
    """Faster Score-CAM: Pearson of the `top_k` map to the full map (input resolution, per image,
    then the mean and the lowest over the images) and its time / the full Score-CAM's."""
    ex = onnxcam.Explainer(path, providers=providers)
    layer = layer_pick(ex)
    full = ex.explain(x, method="scorecam", layers=layer.name)
    t_full = best_time(lambda: ex.explain(x, method="scorecam", layers=layer.name), repeat)
    rows = []
    for k in ks:
        if k >= layer.channels:
            continue
        res = ex.explain(x, method="scorecam", layers=layer.name, top_k=k)
        t = best_time(lambda: ex.explain(x, method="scorecam", layers=layer.name, top_k=k), repeat)
        r = [np.corrcoef(a.ravel(), b.ravel())[0, 1]
             for a, b in zip(res.maps[layer.name], full.maps[layer.name])]
        rows.append([label, f"{layer.channels}", k, f"{np.mean(r):.3f}", f"{np.min(r):.3f}", f"{t / t_full:.2f}",
                     res.provider])
    return rows


def last_in(prefix):
    return lambda ex: max((l for l in ex.layers if l.name.startswith(prefix)), key=lambda l: l.depth)


def versus_pgc(path, net, x, repeat, providers):
    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ex = onnxcam.Explainer(path, providers=providers)
    layer = last_in("/layer4/")(ex)
    targets = ex.forward(x)[0].argmax(1)
    cam = ScoreCAM(model=net, target_layers=[net.layer4])
    cam.batch_size = 64
    xt = torch.from_numpy(x)
    tt = [ClassifierOutputTarget(int(t)) for t in targets]
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
        rows.append(["resnet18 layer4", method, f"{t_pgc / t:.2f}x", ex.provider])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--top-k", default="16,32,64,128,256,512", help="k values of the fidelity table")
    ap.add_argument("--skip-pgc", action="store_true", help="skip the pytorch-grad-cam comparison")
    ap.add_argument("--skip-topk", action="store_true", help="skip the top_k fidelity table")
    ap.add_argument("--skip-memory", action="store_true", help="skip the fresh-process peak memory runs")
    add_providers(ap)
    args = ap.parse_args()
    providers = providers_of(args)
    import torch
    from export_torchvision import export

    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="onnxcam_bench_"))
    net, r18 = export("resnet18", tmp / "resnet18.onnx", size=224, seed=0, verify=False)
    lite0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"
    photos = sorted((ROOT / "models" / "photos").glob("*.jpg"))[: args.images]
    spec = onnxcam.Explainer(lite0).preprocess
    x = onnxcam.load_images(photos, spec)
    print(f"onnxruntime threads: default; torch threads: {torch.get_num_threads()}; images: {len(x)}")

    rows = scorecam_vs_floor(lite0, "efficientnet-lite0", lambda ex: ex.model.auto_layer, x, args.repeat, providers)
    rows += scorecam_vs_floor(r18, "resnet18", last_in("/layer4/"), x, args.repeat, providers)
    print_table("Score-CAM time / plain inference of C images per image at its best batch "
                f"(goal <= 1.0; the two timed in turns; {load_note(load_start)})",
                ["model", "method", "layer C x h x w", "channels scored / image", "best plain batch", "ratio",
                 "masked graph / plain, same batch", "provider"], rows)

    ks = [int(k) for k in args.top_k.split(",")]
    rows = [] if args.skip_topk else topk_fidelity(lite0, "efficientnet-lite0", lambda ex: ex.model.auto_layer,
                                                   x, ks, args.repeat, providers)
    rows += [] if args.skip_topk else topk_fidelity(r18, "resnet18", last_in("/layer4/"), x, ks, args.repeat,
                                                    providers)
    if rows:
        print_table("Faster Score-CAM (scorecam, top_k channels by spatial variance): Pearson of the map to the "
                    f"full Score-CAM map over {len(x)} photos, and time / full Score-CAM ({load_note(load_start)})",
                    ["model", "channels", "top_k", "Pearson (mean)", "Pearson (lowest)", "time / full", "provider"],
                    rows)

    if not args.skip_pgc:
        ort_per_image, batch = plain_inference_per_image(r18, x[:1], batches=(32,), repeat=args.repeat,
                                                         providers=providers)
        xt = torch.from_numpy(np.repeat(x[:1], 32, axis=0))
        with torch.no_grad():
            torch_per_image = best_time(lambda: net(xt), args.repeat) / 32
        rows = [["resnet18 plain forward, batch 32", "(no explanation)",
                 f"{torch_per_image / ort_per_image:.2f}x", "-"]]
        rows += versus_pgc(r18, net, x, args.repeat, providers)
        print_table("pytorch-grad-cam ScoreCAM (batch_size 64, CPU) time / onnxcam time "
                    f"(goal >= 2x; {load_note(load_start)})", ["model/layer", "onnxcam method", "speed-up",
                                                                "onnxcam provider"], rows)

    if not args.skip_memory:
        print_memory(lite0, photos)


def load_note(load_start: float) -> str:
    return f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} now, {os.cpu_count()} cores"


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
