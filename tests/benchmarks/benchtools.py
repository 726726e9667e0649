"""Timing helpers shared by the benchmark scripts (ratios, not absolute times: machines are noisy)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = ("CPUExecutionProvider",)
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


def plain_session(model_path, providers=CPU_ONLY):
    """onnxcam's own IOBinding session over the unmodified model: the plain floor runs the way the
    explain graphs run (input bound on the session's device once, outputs copied back), so on CUDA
    the comparison is device-resident against device-resident."""
    from onnxcam import engine

    sess = engine.Session(Path(model_path).read_bytes(), engine.choose_providers(list(providers)),
                          label="plain forward")
    return sess, sess.sess.get_inputs()[0].name


def plain_inference_per_image(model_path, x1: np.ndarray, batches=(1, 8, 16, 32, 64),
                              repeat: int = 3, providers=CPU_ONLY) -> tuple[float, int]:
    """Seconds per image of plain onnxruntime inference at its best batch size (and that size)."""
    sess, name = plain_session(model_path, providers)
    best = (float("inf"), 1)
    for b in batches:
        xb = sess.to_device(np.repeat(x1, b, axis=0))
        sess.run({name: xb})
        per = best_time(lambda: sess.run({name: xb}), repeat) / b
        best = min(best, (per, b))
    return best


PHOTOS = sorted((ROOT / "models" / "photos").glob("*.jpg"))


def parse_args(doc: str, **defaults):
    """The benchmarks' shared command line: --repeat (best of N timings)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=defaults.get("repeat", 3))
    add_providers(ap)
    return ap.parse_args()


def export_resnet50():
    """A random-weight torchvision ResNet-50 (seed 0), TorchScript export at 224, in a temp folder."""
    import tempfile

    from export_torchvision import export

    return export("resnet50", Path(tempfile.mkdtemp(prefix="onnxcam_bench_")) / "resnet50.onnx",
                  size=224, seed=0, verify=False)[1]


def plain_forward(model_path, xb: np.ndarray, repeat: int = 3, providers=CPU_ONLY) -> float:
    """Best time of one plain onnxruntime run of the batch (session built and warmed first)."""
    sess, name = plain_session(model_path, providers)
    xb = sess.to_device(xb)
    sess.run({name: xb})
    return best_time(lambda: sess.run({name: xb}), repeat)


def add_providers(ap) -> None:
    """--providers: the execution providers the benchmark asks for (onnxcam and the plain floor)."""
    ap.add_argument("--providers", default="CPUExecutionProvider",
                    help="comma-separated onnxruntime providers, e.g. CUDAExecutionProvider,CPUExecutionProvider")


def providers_of(args) -> list[str]:
    """The --providers list, checked against this onnxruntime build before any timing starts (a
    CUDA run on a CPU-only build stops here with onnxcam's one-line reason)."""
    from onnxcam import engine
    from onnxcam.errors import OnnxCamError

    try:
        return engine.choose_providers([p for p in args.providers.split(",") if p])
    except OnnxCamError as exc:
        print(f"error: {exc}", file=sys.__stderr__)
        raise SystemExit(2) from None


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


