"""The gradient CAM family, exactly as DESIGN §6 (and pytorch-grad-cam) state them.

A = activations, G = dS/dA at the layer, both [N, C, h, w], from one engine run.
"""
from __future__ import annotations

import numpy as np

from .base import Method, Request, register, weighted_sum
from .eigencam import principal_map


def _per_layer(fn):
    def compute(req: Request) -> dict[str, np.ndarray]:
        out = {}
        for layer in req.layers:
            a = req.activations[layer.name].astype(np.float64)
            g = req.gradients[layer.name].astype(np.float64)
            raw, weights = fn(a, g)
            if weights is not None:
                req.weights[layer.name] = weights.astype(np.float32)
            out[layer.name] = raw.astype(np.float32)
        return out
    return compute


def gradcam(a, g):
    w = g.mean(axis=(2, 3))
    return weighted_sum(w, a), w


def hirescam(a, g):
    return (g * a).sum(axis=1), None


def gradcam_plusplus(a, g):
    g2, g3 = g ** 2, g ** 3
    s = a.sum(axis=(2, 3), keepdims=True)
    alpha = g2 / (2 * g2 + s * g3 + 1e-6)
    alpha = np.where(g != 0, alpha, 0.0)
    w = (np.maximum(g, 0) * alpha).sum(axis=(2, 3))
    return weighted_sum(w, a), w


def xgradcam(a, g):
    w = (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + 1e-7)
    return weighted_sum(w, a), w


def layercam(a, g):
    return (np.maximum(g, 0) * a).sum(axis=1), None


def eigengradcam(a, g):
    return np.stack([principal_map(m) for m in g * a]), None


_SPECS = [
    ("gradcam", "Grad-CAM", "Selvaraju et al., Grad-CAM, ICCV 2017", gradcam),
    ("hirescam", "HiResCAM", "Draelos & Carin, Use HiResCAM instead of Grad-CAM, 2020", hirescam),
    ("gradcam++", "Grad-CAM++", "Chattopadhyay et al., Grad-CAM++, WACV 2018", gradcam_plusplus),
    ("xgradcam", "XGrad-CAM", "Fu et al., Axiom-based Grad-CAM, BMVC 2020", xgradcam),
    ("layercam", "LayerCAM", "Jiang et al., LayerCAM, IEEE TIP 2021", layercam),
    ("eigengradcam", "Eigen-Grad-CAM", "Eigen-CAM on G ⊙ A (as pytorch-grad-cam's EigenGradCAM)",
     eigengradcam),
]
for _name, _title, _ref, _fn in _SPECS:
    register(Method(_name, _title, _ref, _per_layer(_fn), needs_gradients=True))
