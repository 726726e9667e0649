"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), as pytorch-grad-cam's `AblationCAM` computes it.

The weight of channel k is the relative drop of the target score when channel k of the layer is
ablated: w_k = (S − S_k) / S; map = ReLU(Σ_k w_k A_k), min-max, resize (pytorch-grad-cam's order).
Ablations run in one graph (graph/ablation.py), batched under the memory budget like Score-CAM's
masks: C forwards per image and layer, gradient-free.

The ablated value: 0 where the layer's smallest activation for the image is 0 (post-ReLU layers,
the paper's zeroing), else that minimum − 1e7, pytorch-grad-cam's choice for layers that can be
negative. (pytorch-grad-cam takes the minimum over its whole ablation batch after each row is
written, so from the second row on its value drifts by another −1e7 per row; one value per image
here.) Channels that are constant 0 need no forward: ablating them changes nothing (w = 0).
"""
from __future__ import annotations

import numpy as np

from .base import EIGEN_SMOOTH, Method, Request, channel_weighted, register

ABLATION_VALUE = 1e7


def _ablationcam(req: Request) -> dict[str, np.ndarray]:
    def weigh(layer, i, a):
        low = float(a.min())
        fill = 0.0 if low == 0 else low - ABLATION_VALUE
        live = np.flatnonzero(np.abs(a - fill).reshape(len(a), -1).max(axis=1) > 0)
        keep = np.ones((live.size, len(a)), np.float32)
        keep[np.arange(live.size), live] = 0.0
        original = float(req.scores[i, req.targets[i]])
        ablated = req.explainer.ablated_scores(req.x[i:i + 1], layer.name, keep, fill)[:, req.targets[i]]
        weights = np.zeros(len(a))
        weights[live] = (original - ablated.astype(np.float64)) / original
        return weights
    return channel_weighted(req, weigh)


register(Method("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, Ablation-CAM: Visual Explanations "
                "for Deep Convolutional Network via Gradient-free Localization, WACV 2020", _ablationcam,
                options=(EIGEN_SMOOTH,)))
