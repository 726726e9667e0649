"""Export small timm vision transformers and hybrids with RANDOM weights to ONNX.

Why: issue 16 asks for gradient CAMs on ViT, DeiT (distillation token), Swin (windowed [N, H, W, C]
layout) and MobileViT (conv + transformer hybrid) exports from both PyTorch exporters, compared
with autograd and pytorch-grad-cam on the same weights. Random init (`pretrained=False` after
`torch.manual_seed(seed)`) downloads nothing, and a fixed seed makes the export reproducible, so
tests rebuild the identical torch model themselves. timm is Apache-2.0.

`overrides` shrink a model for cheap tests while keeping its block types (e.g. `depth=4` for a
ViT, `depths=(2, 2, 2, 2)` for a Swin); the named model is used as is without them.

Importable without side effects (torch and timm are imported inside the functions)::

    sys.path.insert(0, "converters"); from export_timm import export
    model, path = export("vit_tiny_patch16_224", "/tmp/vit.onnx", exporter="dynamo")

Command line::

    python converters/export_timm.py --arch vit_tiny_patch16_224 --out /tmp/vit.onnx
    python converters/export_timm.py --arch swin_tiny_patch4_window7_224 --exporter dynamo --out /tmp/swin.onnx
    python converters/export_timm.py --arch vit_tiny_patch16_224 --override depth=4 --size 112 --out /tmp/v.onnx
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402

ARCHS = ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "swin_tiny_patch4_window7_224",
         "mobilevit_xxs"]
# The test fixtures (tests/fixtures/timm): each model's block types at a fraction of its weights, so
# both exporters' files of all four stay under 25 MB, all with 100-class heads. ViT/DeiT: 3 blocks of
# width 96 (3 heads); Swin: width 16, two blocks in each of the first three stages (the second one
# shifted, with its attention mask) and one in the last (7x7 = one window: timm never shifts there);
# MobileViT-XXS as is.
FIXTURES = {
    "vit_tiny_patch16_224": {"depth": 3, "embed_dim": 96, "num_heads": 3, "num_classes": 100},
    "deit_tiny_distilled_patch16_224": {"depth": 3, "embed_dim": 96, "num_heads": 3, "num_classes": 100},
    "swin_tiny_patch4_window7_224": {"embed_dim": 16, "depths": (2, 2, 2, 1), "num_heads": (1, 2, 4, 8),
                                     "num_classes": 100},
    "mobilevit_xxs": {"num_classes": 100},
}
EXPORTERS = ["torchscript", "dynamo"]
# From opset 23 the dynamo exporter writes scaled_dot_product_attention as one Attention op and GELU
# as a Gelu op: a 2-block ViT exported so, as its own fixture
FUSED = ("vit_tiny_patch16_224", {"depth": 2, "embed_dim": 96, "num_heads": 3, "num_classes": 100}, 23)


def build(arch: str, seed: int = 0, size: int | None = None, **overrides):
    """timm.create_model(arch) with random weights (torch.manual_seed(seed)), in eval mode.

    size: the input side when it differs from the model's default (ViT/DeiT/Swin take img_size;
    MobileViT is fully convolutional before its pooled head and takes any size)."""
    import timm
    import torch

    torch.manual_seed(seed)
    kwargs = {"num_classes": 1000, **overrides}
    if size is not None and not arch.startswith("mobilevit"):
        kwargs["img_size"] = size
    model = timm.create_model(arch, pretrained=False, **kwargs)
    with torch.no_grad():   # fresh BatchNorm (MobileViT) is an identity: give it statistics
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def default_size(arch: str) -> int:
    return 256 if arch.startswith("mobilevit") else 224


def sidecar(size: int) -> dict:
    """Preprocessing for onnxcam (timm's ImageNet defaults for these models, stretched to size)."""
    return {"input_size": [size, size], "mean": C.IMAGENET_MEAN, "std": C.IMAGENET_STD,
            "scale": 1 / 255, "channel_order": "RGB", "layout": "NCHW", "resize": "stretch"}


def export(arch, out, exporter="torchscript", size=None, seed=0, dynamic_batch=True, opset=17,
           verify=True, overrides=None):
    """Build `arch` (random weights, `seed`), export it to `out` with a preprocessing sidecar
    `<out>.json`, and return (torch model, Path). With `verify` the onnxruntime logits are
    compared with torch on a photo and the largest difference is printed."""
    import numpy as np
    import torch

    size = size or default_size(arch)
    overrides = dict(overrides or {})
    model = build(arch, seed, size=size, **overrides)
    out = Path(out)
    photo = C.PHOTOS / "chelsea.jpg"
    if photo.exists():
        x = C.load_input(photo, sidecar(size))
    else:
        x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    C.torch_export(model, torch.from_numpy(x), out, exporter=exporter, dynamic_batch=dynamic_batch, opset=opset)
    Path(f"{out}.json").write_text(json.dumps(sidecar(size), indent=1))
    if verify:
        diff = C.compare_with_torch(model, out, x)
        with torch.no_grad():
            scale = float(model(torch.from_numpy(x)).abs().max())
        print(f"{C.describe(out)}; max |ORT - torch| = {diff:.3g} (max |logit| = {scale:.3g})")
    return model, out


def fixture_path(folder, arch: str, exporter: str) -> Path:
    return Path(folder) / f"{arch}_{exporter}.onnx"


def export_fixtures(folder, archs=ARCHS, exporters=EXPORTERS) -> None:
    """The shrunk models of FIXTURES with both exporters (seed 0, default sizes) into `folder`."""
    for arch in archs:
        for exporter in exporters:
            export(arch, fixture_path(folder, arch, exporter), exporter, overrides=FIXTURES[arch])
    arch, overrides, opset = FUSED
    export(arch, fixture_path(folder, arch, f"dynamo_opset{opset}"), "dynamo", opset=opset, overrides=overrides)


def _override(text: str):
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", help=f"a timm model name, e.g. {', '.join(ARCHS)}")
    ap.add_argument("--out", help="output .onnx path (a preprocessing sidecar <out>.json is written beside it)")
    ap.add_argument("--fixtures", metavar="DIR", help="write the shrunk test models (FIXTURES) of every "
                    "architecture with both exporters into DIR instead (tests/fixtures/timm)")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    ap.add_argument("--size", type=int, default=None, help="input height = width (default: the model's)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the random weights")
    ap.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="timm.create_model keyword, e.g. depth=4 or 'depths=(2,2,2,2)' (repeatable)")
    args = ap.parse_args(argv)
    if args.fixtures:
        return export_fixtures(args.fixtures)
    if not (args.arch and args.out):
        ap.error("give --arch and --out, or --fixtures DIR")
    export(args.arch, args.out, args.exporter, args.size, args.seed, args.dynamic_batch, args.opset,
           overrides=dict(_override(o) for o in args.override))


if __name__ == "__main__":
    main()
