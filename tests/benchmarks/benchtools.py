"""Timing helpers shared by the benchmark scripts (ratios, not absolute times: machines are noisy)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "converters"))
sys.path.insert(0, str(ROOT / "tests"))


def best_time(fn, repeat: int = 3) -> float:
    """Minimum wall time of `repeat` calls (the least disturbed run on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def plain_inference_per_image(model_path, x1: np.ndarray, batches=(1, 8, 16, 32, 64),
                              repeat: int = 3) -> tuple[float, int]:
    """Seconds per image of plain onnxruntime inference at its best batch size (and that size)."""
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    best = (float("inf"), 1)
    for b in batches:
        xb = np.repeat(x1, b, axis=0)
        sess.run(None, {name: xb})
        per = best_time(lambda: sess.run(None, {name: xb}), repeat) / b
        best = min(best, (per, b))
    return best


PHOTOS = sorted((ROOT / "models" / "photos").glob("*.jpg"))


def parse_args(doc: str, **defaults):
    """The benchmarks' shared command line: --repeat (best of N timings)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=defaults.get("repeat", 3))
    return ap.parse_args()


def export_resnet50():
    """A random-weight torchvision ResNet-50 (seed 0), TorchScript export at 224, in a temp folder."""
    import tempfile

    from export_torchvision import export

    return export("resnet50", Path(tempfile.mkdtemp(prefix="onnxcam_bench_")) / "resnet50.onnx",
                  size=224, seed=0, verify=False)[1]


def plain_forward(model_path, xb: np.ndarray, repeat: int = 3) -> float:
    """Best time of one plain onnxruntime run of the batch (session built and warmed first)."""
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: xb})
    return best_time(lambda: sess.run(None, {name: xb}), repeat)


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running `code`.

    Read from VmHWM, which starts afresh at exec; ru_maxrss would carry over the parent's peak.
    """
    wrapped = code + ("\nprint([l.split()[1] for l in open('/proc/self/status') "
                      "if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


