"""A torchvision network and its ONNX export side by side, for parity tests that run a peer
(pytorch-grad-cam, Captum, TorchCAM) on the torch model and onnxcam on the export. Random
weights with perturbed BatchNorm statistics (export_torchvision), small inputs to stay cheap."""
from __future__ import annotations

import onnxcam
from conftest import photo_paths


def torchvision_pair(arch: str, export_dir, size: int = 64, images: int = 2, exporter: str = "torchscript"):
    """(torch net in eval mode, Explainer of its export, preprocessed batch of `images` photos)."""
    from export_torchvision import build, export
    _, path = export(arch, export_dir / f"pair_{arch}_{size}_{exporter}" / "model.onnx", exporter=exporter,
                     size=size, seed=0, verify=False, randomize_bn=True)
    net = build(arch, seed=0, randomize_bn=True).eval()   # a fresh copy: exporters may leave hooks behind
    ex = onnxcam.Explainer(path)
    return net, ex, onnxcam.load_images(photo_paths(images), ex.preprocess)


def last_layer(ex, prefix: str) -> str:
    """The deepest catalog tensor whose name starts with prefix (a TorchScript export's module path)."""
    return max((l for l in ex.layers if l.name.startswith(prefix)), key=lambda l: l.depth).name
