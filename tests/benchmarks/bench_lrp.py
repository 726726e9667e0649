"""LRP benchmark (issue 15): one run prints every ratio measured side by side on this machine.

Per model (random-weight torchvision ResNet-50 and VGG-16, the bundled EfficientNet-Lite0) and batch:
1. one LRP pass to the input (EpsilonPlusFlat, `Explainer.relevance`) / one plain onnxruntime
   forward of the same batch (goal <= 3), and the whole `explain(method="lrp")` (which also returns
   relevance at up to five cuts for its conservation figures) / the forward;
2. Relevance-CAM at every catalog layer in one run / one forward (goal <= 4);
3. Zennit EpsilonPlusFlat input relevance (torchvision models) / onnxcam's LRP pass (goal >= 4 at
   batch 1);
4. peak memory (fresh processes, VmHWM) of loading + one LRP pass / loading a plain onnxruntime
   session + one forward (goal <= 2).
Then for one 224x224 image on Lite0: the SR map / one forward (goal <= 20) and the context-aware
saliency step alone, in seconds.

Per-op time of the LRP graph against the forward: tests/benchmarks/profile_lrp.py.

    python tests/benchmarks/bench_lrp.py [--repeat 3] [--models resnet50,vgg16,lite0] [--batches 1,16]
                                         [--providers CUDAExecutionProvider,CPUExecutionProvider]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchtools import PHOTOS, ROOT, add_providers, best_time, peak_rss_mb, plain_forward, print_table, providers_of

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"
TORCHVISION = ("resnet50", "vgg16")


def export(arch: str) -> Path:
    from export_torchvision import export as export_tv
    return export_tv(arch, Path(tempfile.mkdtemp(prefix="onnxcam_bench_")) / f"{arch}.onnx",
                     size=224, seed=0, verify=False)[1]


def zennit_time(arch, xb, targets, repeat):
    """Best time of Zennit's EpsilonPlusFlat input relevance (ResNetCanonizer on ResNets), start
    = target logit as onnxcam's."""
    import torch
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer
    from export_torchvision import build

    net = build(arch, seed=0)
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    onehot = torch.zeros(len(xb), 1000)
    onehot[torch.arange(len(xb)), torch.from_numpy(np.asarray(targets))] = 1.0
    canonizers = [ResNetCanonizer()] if arch.startswith("resnet") else []

    def run():
        xt = torch.from_numpy(xb).requires_grad_(True)
        with EpsilonPlusFlat(canonizers=canonizers).context(net) as modified:
            out = modified(xt)
            torch.autograd.grad(out, xt, grad_outputs=out * onehot)
    run()
    return best_time(run, repeat)


def peak_ratio(path, batch) -> tuple[float, float]:
    """(peak MB of load + one LRP pass, peak MB of a plain session + one forward), fresh processes."""
    feed = f"x = np.random.default_rng(0).normal(size=({batch}, 3, 224, 224)).astype(np.float32)\n"
    lrp = peak_rss_mb("import numpy as np, onnxcam\n" + feed +
                      f"ex = onnxcam.Explainer({str(path)!r}); ex.relevance(x, ['input'])")
    fwd = peak_rss_mb("import numpy as np, onnxruntime as ort\n" + feed +
                      f"s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
                      "s.run(None, {s.get_inputs()[0].name: x})")
    return lrp, fwd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="resnet50,vgg16,lite0")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rc-batches", default="1", help="batches for Relevance-CAM at every layer (it returns "
                    "activations and relevances of all layers: ResNet-50 at batch 16 outgrew 14 GB)")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory runs")
    add_providers(ap)
    args = ap.parse_args()
    providers = providers_of(args)
    load_start = os.getloadavg()[0]
    batches = [int(b) for b in args.batches.split(",")]
    rc_batches = [int(b) for b in args.rc_batches.split(",")]
    rows = []
    for arch in args.models.split(","):
        path = LITE0 if arch == "lite0" else export(arch)
        ex = onnxcam.Explainer(path, providers=providers)
        x1 = onnxcam.load_images(PHOTOS, ex.preprocess)
        n_layers = len([l for l in ex.layers if l.preferred])
        for n in batches:
            xb = np.ascontiguousarray(np.resize(x1, (n,) + x1.shape[1:]))
            t_fwd = plain_forward(path, xb, args.repeat, providers)
            ex.relevance(xb, ["input"])
            t_pass = best_time(lambda: ex.relevance(xb, ["input"]), args.repeat)
            res = ex.explain(xb, method="lrp")
            t_lrp = best_time(lambda: ex.explain(xb, method="lrp"), args.repeat)
            if n in rc_batches:
                ex.explain(xb, method="relevancecam", layers="all")
                t_rc = best_time(lambda: ex.explain(xb, method="relevancecam", layers="all"), args.repeat)
                rc = f"{t_rc / t_fwd:.2f} ({n_layers} layers)"
            else:
                rc = "-"
            zen = (f"{zennit_time(arch, xb, res.target, args.repeat) / t_pass:.1f}x"
                   if arch in TORCHVISION else "-")
            if args.no_memory:
                mem = "-"
            else:
                peak_lrp, peak_fwd = peak_ratio(path, n)
                mem = f"{peak_lrp / peak_fwd:.2f} ({peak_lrp:.0f} / {peak_fwd:.0f} MB)"
            provider = ex.sessions.provider or "-"
            ex.sessions.clear()
            rows.append([arch, n, f"{t_fwd * 1e3:.0f}", f"{t_pass / t_fwd:.2f}", f"{t_lrp / t_fwd:.2f}",
                         rc, zen, mem, provider])
            print("... " + " | ".join(str(c) for c in rows[-1]), file=sys.__stdout__, flush=True)
        del ex
    print_table("LRP and Relevance-CAM: time / one plain onnxruntime forward of the same batch, same run "
                f"(load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} now, {os.cpu_count()} cores)",
                ["model", "batch", "forward ms", "one LRP pass (goal <= 3)", "explain lrp",
                 "Relevance-CAM, all layers (goal <= 4)", "Zennit / onnxcam pass (goal >= 4 at batch 1)",
                 "peak memory LRP / forward (goal <= 2)", "provider"], rows)

    lite = onnxcam.Explainer(LITE0, providers=providers)
    x = onnxcam.load_images(PHOTOS[:1], lite.preprocess)
    t_fwd = plain_forward(LITE0, x, args.repeat, providers)
    lite.explain(x, method="srmap")
    t_sr = best_time(lambda: lite.explain(x, method="srmap"), args.repeat)
    t_lrp = best_time(lambda: lite.explain(x, method="lrp", composite="sr"), args.repeat)
    print_table("EfficientNet-Lite0, one 224x224 image: time / one plain onnxruntime forward",
                ["what", "ratio", "provider"],
                [["SR map (LRP + context-aware saliency; goal <= 20)", f"{t_sr / t_fwd:.1f}", lite.provider],
                 ["  of which context-aware saliency (numpy and onnxruntime, CPU)", f"{(t_sr - t_lrp) / t_fwd:.1f}", "-"]])
    print(f"\ncontext-aware saliency of one 224x224 image: {t_sr - t_lrp:.2f} s on this machine")


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")
    main()
