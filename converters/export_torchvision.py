"""Export any torchvision classification architecture with RANDOM weights to ONNX.

Why: tests need many CNN topologies (residual, dense concat, depthwise, SE, LayerNorm, ...)
from both PyTorch exporters, and need the torch model next to the ONNX file so gradients /
relevances computed on the ONNX graph can be compared with autograd. Random weights
(``weights=None`` after ``torch.manual_seed(seed)``) mean nothing is downloaded, and a fixed
seed makes the export reproducible.

Importable without side effects (torch is imported inside the functions)::

    sys.path.insert(0, "converters"); from export_torchvision import export
    model, path = export("resnet18", "/tmp/r18.onnx", exporter="dynamo")

Command line::

    python converters/export_torchvision.py --arch resnet18 --out /tmp/resnet18.onnx
    python converters/export_torchvision.py --arch convnext_tiny --exporter dynamo --out /tmp/cnx.onnx
    python converters/export_torchvision.py --arch mobilenet_v2 --size 160 --no-dynamic-batch --out /tmp/mb2.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402

EXAMPLE_ARCHS = ["resnet18", "resnet50", "vgg16_bn", "mobilenet_v2", "mobilenet_v3_small",
                 "efficientnet_b0", "densenet121", "convnext_tiny"]


def build(arch: str, seed: int = 0, num_classes: int = 1000, randomize_bn: bool = False,
          head_width: int | None = None, head_pool: int = 7):
    """torchvision.models.<arch> with random weights, in eval mode.

    Same as ``torch.manual_seed(seed); torchvision.models.get_model(arch, weights=None)``, so a
    test can rebuild the identical torch model itself. A fresh BatchNorm has running stats 0/1
    (identity in eval mode); ``randomize_bn`` perturbs them so BN-folding mistakes show up.
    It also matters for the signal scale: untrained mobilenet_v2 / mobilenet_v3_small /
    efficientnet_b0 give logits of ~1e-9 .. 1e-14 with fresh BN stats (~0.01 .. 0.2 with
    ``randomize_bn``), which makes absolute gradient/logit tolerances meaningless.
    ``head_width`` narrows a VGG's two hidden classifier layers (4096 wide, 120 M of VGG-16's 138 M
    weights) and ``head_pool`` its adaptive pool (7x7 needs 224 px inputs; 3x3 takes 112 px): the
    same layer types at a fraction of the memory, for tests that explain its features.
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if head_width is not None:
        if not arch.startswith("vgg"):
            raise ValueError(f"head_width applies to VGG classifiers, not {arch}")
        c = model.classifier  # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        model.avgpool = torch.nn.AdaptiveAvgPool2d(head_pool)
        c[0] = torch.nn.Linear(512 * head_pool * head_pool, head_width)
        c[3] = torch.nn.Linear(head_width, head_width)
        c[6] = torch.nn.Linear(head_width, num_classes)
    with torch.no_grad():
        for m in model.modules() if randomize_bn else ():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export(arch, out, exporter="torchscript", size=224, seed=0, dynamic_batch=True, opset=17,
           verify=True, randomize_bn=False, head_width=None, head_pool=7):
    """Build ``arch`` (random weights, ``seed``), export to ``out`` and return (model, Path).

    With ``verify`` the ORT logits are compared with torch on a real photo (chelsea, or a
    seeded random tensor if the photo is missing) and the max abs difference is printed.
    """
    import numpy as np
    import torch

    model = build(arch, seed, randomize_bn=randomize_bn, head_width=head_width, head_pool=head_pool)
    photo = C.PHOTOS / "chelsea.jpg"
    if photo.exists():
        manifest = {"input_size": [size, size], "mean": C.IMAGENET_MEAN, "std": C.IMAGENET_STD,
                    "scale": 1 / 255, "channel_order": "RGB", "layout": "NCHW", "resize": "stretch"}
        x = C.load_input(photo, manifest)
    else:
        x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    out = C.torch_export(model, torch.from_numpy(x), out, exporter=exporter,
                         dynamic_batch=dynamic_batch, opset=opset)
    if verify:
        diff = C.compare_with_torch(model, out, x)
        with torch.no_grad():
            scale = float(model(torch.from_numpy(x)).abs().max())
        # report the logit scale too: untrained mobilenet/efficientnet give ~1e-9 logits, which
        # makes an absolute difference meaningless (use randomize_bn=True for those)
        print(f"{C.describe(out)}; max |ORT - torch| = {diff:.3g} (max |logit| = {scale:.3g})")
    return model, Path(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True,
                    help=f"any torchvision.models classification name, e.g. {', '.join(EXAMPLE_ARCHS)}")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    ap.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the random weights")
    ap.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                    help="dynamic batch dimension (default on; --no-dynamic-batch fixes it to 1)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--randomize-bn", action="store_true",
                    help="perturb BatchNorm running mean/var (fresh ones are an identity)")
    args = ap.parse_args(argv)
    export(args.arch, args.out, args.exporter, args.size, args.seed, args.dynamic_batch, args.opset,
           randomize_bn=args.randomize_bn)


if __name__ == "__main__":
    main()
