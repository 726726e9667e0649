"""Dataset throughput and memory: images/s of Grad-CAM and Relevance-CAM at the auto layer of the
bundled EfficientNet-Lite0 over N augmented copies of the bundled photos (tests/dataset_images.py),
printed as ratios measured side by side on this machine.

For each method:
- naive: a loop over Explainer.explain(path) with one image at a time (on min(N, --naive) images);
- streaming: `onnxcam explain DIR --method M --save none --out OUT` (a fresh process; the rate is
  run.json's, from the first image to the last part written, model loading excluded);
- streaming + files: the same with --save overlays,npz (on min(N, --naive) images);
- Ray, 1 and 2 workers: `--engine ray --workers K --save none` on a local cluster (K CPUs, one
  onnxruntime thread per actor); Ray delivers finished batches in bursts, so this rate is the whole
  run's, cluster start and each actor's model loading included (a lower bound of its steady rate);
- explain graph: Explainer.explain on the same batches already decoded in memory (what onnxruntime
  and the method cost without any reading or writing: the ceiling of the streaming rate);
- plain inference: the model's own forward (onnxruntime, no gradient) at the same batch, images
  decoded in memory (a ceiling no pipeline that reads images reaches);
- plain inference, streamed: the same forward fed by onnxcam's own prefetching decoder
  (onnxcam.dataset.prefetch.batches, same workers and batch) over the same N files: what a user's
  inference job over the folder achieves, image decoding overlapped: the issue's goal is stated
  against this rate (streaming explain ≥ 0.9× it).
With --pgc: pytorch-grad-cam's GradCAM on a decoded batch of the same model in torch (the issue's
goal: at most 1/4 of onnxcam's streaming rate).
Memory: the streaming process's RSS (VmRSS) sampled every 0.2 s, read at 25/50/75/100 % of the
images: flat when it does not grow with the count.

    python tests/benchmarks/bench_stream.py [--images 2000] [--naive 200] [--batch 64] [--no-ray] [--pgc]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchtools import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from dataset_images import make_dataset  # noqa: E402

import onnxcam  # noqa: E402
from onnxcam.dataset.prefetch import batches  # noqa: E402
from onnxcam.preprocess import load_images  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"
METHODS = ("gradcam", "relevancecam")


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stream_run(folder: Path, out: Path, method: str, batch: int, save: str, total: int,
               engine: tuple = ()) -> tuple[float, list]:
    """(images/s from run.json, [(images in the index, RSS MB)] samples); engine: extra flags."""
    cmd = [sys.executable, "-m", "onnxcam", "explain", str(LITE0), str(folder), "--method", method,
           "--save", save, "--out", str(out), "--max-batch", str(batch), "--part-size", str(batch), *engine]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "RAY_AUTH_MODE": "disabled"})
    samples = []
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        parts = len(list((out / "index").glob("part-*.parquet"))) if (out / "index").is_dir() else 0
        if mb is not None:
            samples.append((min(parts * batch, total), mb))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"streaming run failed ({proc.returncode}): {' '.join(cmd)}")
    run = json.loads((out / "run.json").read_text())
    if engine:   # Ray hands batches to the driver in bursts: the whole run's rate (cluster start and
        return run["explained"] / run["seconds"], samples   # actors' model loading included)
    return run["images_per_second"], samples


def rss_at(samples, total: int) -> list[str]:
    out = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        seen = [mb for n, mb in samples if n <= frac * total]
        out.append(f"{max(seen):.0f}" if seen else "-")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--naive", type=int, default=200, help="images for the naive loop and the run with files")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pgc", action="store_true", help="also time pytorch-grad-cam's GradCAM (needs the test extra)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs (also skipped without the ray extra)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onnxcam_stream_"))
    folder, small = tmp / "images", tmp / "small"
    paths = make_dataset(folder, args.images, seed=0)
    make_dataset(small, min(args.images, args.naive), seed=0)
    n_naive = min(args.images, args.naive)
    ex = onnxcam.Explainer(LITE0, max_batch=args.batch)
    x = load_images(paths[:args.batch], ex.preprocess)

    sess = ort.InferenceSession(str(LITE0), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    t = time.perf_counter()
    reps = max(1, args.images // len(x))
    for _ in range(reps):
        sess.run(None, {name: x})
    plain = reps * len(x) / (time.perf_counter() - t)
    t = time.perf_counter()
    for batch in batches(paths, ex.preprocess, args.batch, workers=2):
        sess.run(None, {name: batch.x})
    plain_streamed = len(paths) / (time.perf_counter() - t)

    print(f"EfficientNet-Lite0, {args.images} images ({args.batch} per batch), CPU, "
          f"onnxruntime {ort.__version__}; plain inference {plain:.1f} images/s on decoded batches, "
          f"{plain_streamed:.1f} images/s streamed from the files (2 decoding threads)")
    ray = importlib.util.find_spec("ray") is not None and not args.no_ray
    print("| method | naive loop | streaming (index only) | streaming + overlays, npz | explain graph, "
          "decoded batches | Ray 1 / 2 workers (whole run) | streaming ÷ plain inference (decoded / streamed) "
          "| streaming ÷ explain graph | streaming ÷ naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    memory, grad_rate = [], None
    for method in METHODS:
        ex.explain(x, method=method)
        t = time.perf_counter()
        for p in paths[:n_naive]:
            ex.explain(p, method=method)
        naive = n_naive / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(reps):
            ex.explain(x, method=method)
        graph = reps * len(x) / (time.perf_counter() - t)
        rate, samples = stream_run(folder, tmp / f"out_{method}", method, args.batch, "none", args.images)
        files_rate, _ = stream_run(small, tmp / f"files_{method}", method, args.batch, "overlays,npz", n_naive)
        memory.append((method, rss_at(samples, args.images)))
        grad_rate = rate if method == "gradcam" else grad_rate
        rays = [stream_run(folder, tmp / f"ray{k}_{method}", method, args.batch, "none", args.images,
                           ("--engine", "ray", "--workers", str(k)))[0] for k in (1, 2)] if ray else []
        shown = " / ".join(f"{r:.1f}/s" for r in rays) if rays else "-"
        print(f"| {method} | {naive:.1f}/s | {rate:.1f}/s | {files_rate:.1f}/s | {graph:.1f}/s | {shown} | "
              f"{rate / plain:.2f} / {rate / plain_streamed:.2f} | {rate / graph:.2f} | {rate / naive:.1f} |")
    if args.pgc:
        from bench_gradcam import lite0_torch, time_pgc
        net = lite0_torch()
        targets = ex.explain(x, method="gradcam").target
        pgc = len(x) / time_pgc(net, net._bn1, x, targets, 3)   # the head BatchNorm: see bench_gradcam
        print(f"\npytorch-grad-cam GradCAM on the same decoded batch of {len(x)}, same model (torch, "
              f"eval): {pgc:.1f} images/s = {pgc / grad_rate:.2f} x onnxcam's streaming Grad-CAM")
    print(f"\nRSS of the streaming process (MB) after 25 / 50 / 75 / 100 % of {args.images} images:")
    for method, row in memory:
        print(f"  {method}: {' / '.join(row)}")
    print(f"(files in {tmp})")


if __name__ == "__main__":
    main()
