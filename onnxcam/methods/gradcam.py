"""The gradient CAM family, exactly as DESIGN §6 (and pytorch-grad-cam) state them.

A = activations, G = dS/dA at the layer, both [N, C, h, w], from one engine run.
"""
from __future__ import annotations

import numpy as np

from .base import EIGEN_SMOOTH, Method, Request, channel_sum, eigen_smooth, principal_map, register, weighted_sum


def _per_layer(fn):
    def compute(req: Request) -> dict[str, np.ndarray]:
        smooth = eigen_smooth(req)
        out = {}
        for layer in req.layers:
            a = req.activations[layer.name].astype(np.float64)
            g = req.gradients[layer.name].astype(np.float64)
            raw, weights = fn(a, g, smooth)
            if weights is not None:
                req.weights[layer.name] = weights.astype(np.float32)
            out[layer.name] = raw.astype(np.float32)
        return out
    return compute


def gradcam(a, g, smooth=False):
    w = g.mean(axis=(2, 3))
    return weighted_sum(w, a, smooth), w


def hirescam(a, g, smooth=False):
    return channel_sum(g * a, smooth), None


def gradcam_plusplus(a, g, smooth=False):
    g2, g3 = g ** 2, g ** 3
    s = a.sum(axis=(2, 3), keepdims=True)
    alpha = g2 / (2 * g2 + s * g3 + 1e-6)
    alpha = np.where(g != 0, alpha, 0.0)
    w = (np.maximum(g, 0) * alpha).sum(axis=(2, 3))
    return weighted_sum(w, a, smooth), w


def xgradcam(a, g, smooth=False):
    w = (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + 1e-7)
    return weighted_sum(w, a, smooth), w


def layercam(a, g, smooth=False):
    return channel_sum(np.maximum(g, 0) * a, smooth), None


def eigengradcam(a, g, smooth=False):
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
    register(Method(_name, _title, _ref, _per_layer(_fn), needs_gradients=True,
                    options=() if _name == "eigengradcam" else (EIGEN_SMOOTH,)))
