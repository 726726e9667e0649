"""Per-layer Pearson of onnxcam's Relevance-CAM against its authors' rules, for README.

Prints one Markdown row per (network, exporter, BN scales, variant): the worst-image Pearson of
the channel weights / of the maps at each ResNet stage or VGG depth. The reference is the torch
re-implementation of mongeoroo/Relevance-CAM (modules/layers.py, modules/resnet.py) in
tests/test_relevancecam_authors.py, random weights with BN statistics randomized.

    python tests/benchmarks/relcam_authors.py [--quick] [--timeout 1500]

Exports: torchscript and dynamo (both fold BN at export), dynamo-bn (dynamo with optimize=False:
the BN nodes stay in the file and intake records them). --quick leaves out ResNet-101 and the
negative-γ rows of folded exports.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

import benchtools  # noqa: F401  (puts tests/ on sys.path)
from test_relevancecam_authors import compare

ROWS = [  # arch, exporter, negative γ, method
    ("resnet18", "torchscript", False, "relevancecam"),
    ("resnet18", "torchscript", False, "relevancecam-bias"),
    ("resnet18", "dynamo", False, "relevancecam"),
    ("resnet18", "dynamo-bn", True, "relevancecam"),
    ("resnet50", "torchscript", False, "relevancecam"),
    ("resnet50", "torchscript", False, "relevancecam-bias"),
    ("resnet50", "dynamo", False, "relevancecam"),
    ("resnet50", "dynamo-bn", True, "relevancecam"),
    ("resnet101", "torchscript", False, "relevancecam"),
    ("resnet101", "dynamo-bn", True, "relevancecam"),
    ("vgg16", "torchscript", False, "relevancecam"),
    ("vgg16", "dynamo", False, "relevancecam"),
    ("vgg16_bn", "torchscript", False, "relevancecam"),
    ("vgg16_bn", "dynamo-bn", True, "relevancecam"),
    ("resnet50", "torchscript", True, "relevancecam"),   # γ < 0 folded at export: sign lost
    ("vgg16_bn", "dynamo", True, "relevancecam"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=int, default=1500, help="seconds for the whole table")
    args = ap.parse_args()
    signal.alarm(args.timeout)
    rows = [r for r in ROWS if not (args.quick and (r[0] == "resnet101" or (r[2] and r[1] != "dynamo-bn")))]
    print("| network | export | γ | method | weights / maps Pearson per depth (deep → shallow) | s |")
    print("|---|---|---|---|---|---|")
    for arch, exporter, negative, method in rows:
        t = time.perf_counter()
        res = compare(arch, exporter, negative, size=32 if arch.startswith("vgg") else 64, method=method)
        cells = " · ".join(f"{cut}: {pw:.6f} / {pm:.6f}" for cut, pw, pm in res)
        sign = "some < 0" if negative else "> 0"
        print(f"| {arch} | {exporter} | {sign} | {method} | {cells} | {time.perf_counter() - t:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
