"""Figures for README: Score-CAM, HiResCAM/Grad-CAM and the SR map against their authors' computation
(replicated in tests/test_authors_parity.py, which cites the files followed), on a random-init
torchvision ResNet-18 (BN statistics perturbed, TorchScript export, 96 px) and a small VGG-style
net for the SR map, with the bundled photos.

    python tests/benchmarks/authors_parity.py [--images 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "converters"), str(ROOT / "tests")]

import onnxcam  # noqa: E402
from conftest import photo_paths  # noqa: E402
from test_authors_parity import (export_resnet, hirescam_figures, scorecam_figures,  # noqa: E402
                                 srmap_figures)


def show(title, rows):
    print(f"\n{title}")
    keys = list(rows[0])
    print("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print("  ".join(f"{v:>12.9f}" if isinstance(v, float) else f"{str(v):>12}" for v in r.values()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        net, ex = export_resnet(Path(tmp))
        x = onnxcam.load_images(photo_paths(args.images), ex.preprocess)
        show("Score-CAM (scorecam) vs haofanwang/Score-CAM cam/scorecam.py: Pearson", scorecam_figures(net, ex, x))
        show("HiResCAM / Grad-CAM vs rachellea/hirescam attn_analysis/cams.py: Pearson of raw maps",
             hirescam_figures(net, ex, x))
        show("SR map step 1 (LRP) vs the paper's rules, and the SR maps: Pearson",
             srmap_figures(Path(tmp), args.images))


if __name__ == "__main__":
    main()
