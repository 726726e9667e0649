"""What the metrics share: class probabilities of many perturbed images from batched runs."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError


def followed_scores(ex, scores: np.ndarray) -> np.ndarray:
    """The scores [M, K] that metrics (and Score-CAM's channel weights) follow: class probabilities
    where S's columns are classes (softmax, or sigmoid for a multi-label head, or the model's own
    Softmax/Sigmoid output: Explainer.probabilities), else S itself (a region's summed logits, a
    cosine, a raw element: a softmax over those is no probability of anything, and over the one
    column of a similarity it is always 1)."""
    if not ex.model.class_scores:
        return np.asarray(scores, np.float64)
    return ex.probabilities(scores)


def class_probability(ex, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """followed_scores of each image's target column ([M] for M images and M targets)."""
    scores, _ = ex.forward(images)
    return followed_scores(ex, scores)[np.arange(len(images)), targets]


def metric_score(ex) -> str:
    """What class_probability returns for this Explainer, in words (evaluate's JSON and report)."""
    m = ex.model
    if not m.class_scores:
        return "raw score S (not a probability)"
    if m.score_name == m.output_name and m.output_activation in ("Softmax", "Sigmoid"):
        return f"the model's {m.output_activation} output"
    return "sigmoid probability" if m.final_activation == "Sigmoid" else "softmax probability"


def check_maps(maps, count: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Maps [N, H, W] a metric can rank: finite (a NaN map has no order, and NaN figures would
    pass for results), one per image and at the image's size when those are given."""
    maps = np.asarray(maps)
    if maps.ndim == 3 and (len(maps) == 0 or 0 in maps.shape[1:]):
        raise OnnxCamError(f"maps have shape {maps.shape}: a metric needs at least one non-empty map")
    if maps.ndim != 3 or (count is not None and len(maps) != count) or \
            (size is not None and tuple(maps.shape[1:]) != tuple(size)):
        want = f"[{count if count is not None else 'N'}, {', '.join(map(str, size)) if size else 'H, W'}]"
        raise OnnxCamError(f"maps have shape {maps.shape}, a metric needs one map per image: {want}; "
                           "pass Result.maps[layer]")
    if not np.issubdtype(maps.dtype, np.number) or np.iscomplexobj(maps):
        raise OnnxCamError(f"maps must be real numbers, got {maps.dtype}")
    finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
    if not finite.all():
        raise OnnxCamError(f"map {int(np.flatnonzero(~finite)[0])} contains NaN or infinite values, "
                           "which rank nothing; explain again with a model that computes finite numbers")
    return maps.astype(np.float32)


def image_size(ex) -> tuple[int, int]:
    """(H, W) of the model's input images, the size maps are compared at."""
    return tuple(ex.model.image_shape[1:])


def as_nchw_mask(ex, maps: np.ndarray) -> np.ndarray:
    """Maps [N, H, W] as multiplicative masks broadcastable over the model's input layout."""
    return maps[:, None] if ex.model.layout == "NCHW" else maps[..., None]


def blurred(ex, x: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Gaussian-blurred copies of the inputs (RISE's insertion canvas)."""
    axes = (0, 2, 3, 1) if ex.model.layout == "NCHW" else (0, 1, 2, 3)
    hwc = x.transpose(axes)
    out = np.stack([cv2.GaussianBlur(img, (0, 0), sigma) for img in hwc])
    return out.transpose((0, 3, 1, 2)) if ex.model.layout == "NCHW" else out
