"""Peak memory of intake and of one explain run on a large model (VGG-16-BN, 0.5 GB of weights).

Each stage runs in a fresh process, so its figure is its own: the process's VmHWM (peak RSS, reset
at exec; getrusage's ru_maxrss would carry this parent's RSS into the child), less what importing
onnxcam took, printed next to the model's size as a ratio.

    python tests/benchmarks/bench_memory.py            # exports VGG-16-BN (random weights) once
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STAGE = """
import sys
import numpy as np
import onnxcam
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = peak()
ex = onnxcam.Explainer(sys.argv[1])
loaded = peak()
if sys.argv[2] != "intake":
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    if sys.argv[2] == "gradient":
        ex.gradients(x, ex.layers[-1:])
    else:
        ex.relevance(x, ["input"])
print(base, loaded, peak())
"""


def main() -> None:
    sys.path.insert(0, str(ROOT / "converters"))
    from export_torchvision import export

    path = Path(tempfile.mkdtemp(prefix="onnxcam_mem_")) / "vgg16_bn.onnx"
    export("vgg16_bn", path, size=224, seed=0, verify=False, randomize_bn=True)
    weights_mb = path.stat().st_size / 2**20
    print(f"VGG-16-BN, TorchScript export, {weights_mb:.0f} MB")
    print("| stage | peak RSS after import (MB) | ÷ model size |")
    print("|---|---|---|")
    for stage in ("intake", "gradient", "lrp"):
        out = subprocess.run([sys.executable, "-c", STAGE, str(path), stage], capture_output=True, text=True,
                             check=True, env={"PYTHONPATH": str(ROOT)})
        base, _, peak = map(float, out.stdout.split())
        print(f"| {stage} (Explainer{'' if stage == 'intake' else ' + one ' + stage + ' run, batch 2'}) "
              f"| {peak - base:.0f} | {(peak - base) / weights_mb:.1f} |")


if __name__ == "__main__":
    main()
