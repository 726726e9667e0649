"""Group-CAM (Zhang et al., 2021), as the authors' code (wofmanaf/Group-CAM `cam/groupcam.py`)
computes it.

Grad-CAM's weighted activations α_k A_k (α_k = mean of dS/dA_k) are cut into `groups` chunks of
consecutive channels (torch.chunk's sizes: ⌈K/groups⌉, so there may be fewer chunks); each chunk
summed over its channels, ReLU, values at or below the map's 70th percentile set to 0, upsampled
bilinearly (half-pixel) to the input and min-max normalized (constant maps skipped) is a mask M_g.
The model sees each blend x ⊙ M_g + blur(x) ⊙ (1 − M_g), blur = Gaussian, 51×51 kernel, σ = 50,
reflected borders, applied to the preprocessed input (as the code blurs the normalized tensor);
the mask's weight is p_c(blend) − p_c(blur(x)) with p the softmax probability (the raw S where S's
columns are not classes); map = ReLU(Σ_g weight_g M_g), min-max, at input resolution. The blends
run batched through one graph (graph/masking.py, blend=True), `groups` forwards per image.
"""
from __future__ import annotations

import cv2
import numpy as np

from .. import postprocess
from ..metrics.common import followed_scores
from . import options as opt
from .base import Method, Request, register

GROUPS = 32
PERCENTILE = 70
BLUR_KERNEL, BLUR_SIGMA = 51, 50.0


def blurred(x: np.ndarray, layout: str) -> np.ndarray:
    """The authors' blur of one preprocessed image [C, H, W] (or [H, W, C] for NHWC)."""
    hwc = x if layout == "NHWC" else x.transpose(1, 2, 0)
    out = cv2.GaussianBlur(np.ascontiguousarray(hwc, np.float32), (BLUR_KERNEL, BLUR_KERNEL), BLUR_SIGMA,
                           borderType=cv2.BORDER_REFLECT_101).reshape(hwc.shape)
    return out if layout == "NHWC" else out.transpose(2, 0, 1)


def group_masks(weighted: np.ndarray, groups: int, hw: tuple[int, int]) -> np.ndarray:
    """Masks [M, H, W] from one image's weighted activations [K, h, w] (module docstring)."""
    size = -(-len(weighted) // groups)
    masks = []
    for start in range(0, len(weighted), size):
        m = np.maximum(weighted[start:start + size].sum(axis=0), 0)
        m = np.where(m > np.percentile(m, PERCENTILE), m, 0).astype(np.float32)
        up = postprocess.resize(m[None], hw)[0].astype(np.float64)
        if up.max() > up.min():
            masks.append((up - up.min()) / (up.max() - up.min()))
    return np.asarray(masks, np.float32).reshape(-1, *hw)


def _groupcam(req: Request) -> dict[str, np.ndarray]:
    groups = opt.option(req, "groups", GROUPS, opt.count)
    ex = req.explainer
    layout = ex.model.layout
    hw = tuple(ex.model.image_shape[1:])
    out = {}
    for layer in req.layers:
        a = req.activations[layer.name].astype(np.float64)
        weighted = a * req.gradients[layer.name].astype(np.float64).mean(axis=(2, 3), keepdims=True)
        maps = np.zeros((len(a),) + hw)
        for i in range(len(a)):
            masks = group_masks(weighted[i], groups, hw)
            if not len(masks):
                continue
            base = blurred(req.x[i], layout)[None]
            c = req.targets[i]
            start = followed_scores(ex, ex.forward(base)[0])[0, c]
            scores = ex.masked_scores(req.x[i:i + 1], masks[:, None], align_corners=False, eps=None,
                                      what="Group-CAM", base=base)
            maps[i] = np.einsum("m,mhw->hw", followed_scores(ex, scores)[:, c] - start, masks)
        out[layer.name] = maps.astype(np.float32)
    return out


register(Method("groupcam", "Group-CAM", "Zhang et al., Group-CAM: Group Score-Weighted Visual Explanations "
                "for Deep Convolutional Networks, 2021 (the authors' code)", _groupcam,
                needs_gradients=True, options=("groups",)))
