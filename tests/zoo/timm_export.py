"""Build a timm CNN with random weights and export it with either PyTorch exporter (test-only).

Random init after ``torch.manual_seed(seed)`` (``pretrained=False``: nothing is downloaded); BatchNorm
running statistics are perturbed as in converters/export_torchvision.py so a folded BN is not an
identity and untrained nets do not give vanishing logits.
"""
from __future__ import annotations

import sys
from pathlib import Path

_CONVERTERS = str(Path(__file__).resolve().parents[2] / "converters")
if _CONVERTERS not in sys.path:
    sys.path.insert(0, _CONVERTERS)
import _common as C  # noqa: E402


def build(name: str, seed: int = 0, num_classes: int = 10):
    """timm.create_model(name) with random weights, BN statistics perturbed, in eval mode."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export(name: str, out, exporter: str = "torchscript", size: int = 96, seed: int = 0,
           num_classes: int = 10):
    """Build and export; returns (model, path). TorchScript at opset 17, dynamo at 18."""
    import numpy as np
    import torch

    model = build(name, seed, num_classes)
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    path = C.torch_export(model, torch.from_numpy(x), out, exporter=exporter, dynamic_batch=True,
                          opset=17 if exporter == "torchscript" else 18)
    return build(name, seed, num_classes), Path(path)
