"""What the metrics share: class probabilities of many perturbed images from batched runs."""
from __future__ import annotations

import cv2
import numpy as np



def class_probability(ex, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Probability of each image's target class ([M] for M images and M targets): softmax, or
    sigmoid for multi-label models (Explainer.probabilities)."""
    scores, _ = ex.forward(images)
    return ex.probabilities(scores)[np.arange(len(images)), targets]


def as_nchw_mask(ex, maps: np.ndarray) -> np.ndarray:
    """Maps [N, H, W] as multiplicative masks broadcastable over the model's input layout."""
    return maps[:, None] if ex.model.layout == "NCHW" else maps[..., None]


def blurred(ex, x: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Gaussian-blurred copies of the inputs (RISE's insertion canvas)."""
    axes = (0, 2, 3, 1) if ex.model.layout == "NCHW" else (0, 1, 2, 3)
    hwc = x.transpose(axes)
    out = np.stack([cv2.GaussianBlur(img, (0, 0), sigma) for img in hwc])
    return out.transpose((0, 3, 1, 2)) if ex.model.layout == "NCHW" else out
