"""Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018).

Y = class probability on the image, O = on the image multiplied by the normalized map (a soft
mask, applied to the preprocessed input: masked-out pixels become the dataset mean).
drop = mean_i max(0, Y - O) / Y x 100; increase = mean_i [O > Y] x 100.

Variant "relevancecam" (Lee et al., CVPR 2021, as their code evaluates): only the top 50% of each
map's pixels are kept (the rest set to 0) and the drop is averaged over the images whose drop is
positive.

Targets whose score is not a probability (a segmentation region's summed logits, a cosine, a raw
output element: metrics.common.class_probability) follow the raw score S, which may be negative:
the drop is then relative to |Y| (max(0, Y - O) / |Y|; a fall from 10 to -5 is a 150 % drop, as
the score lost one and a half times its size), and 100 % where Y is exactly 0 and O below it.
"""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError
from .common import as_nchw_mask, check_maps, class_probability, image_size


def average_drop_increase(ex, x: np.ndarray, maps: np.ndarray, targets, variant: str = "gradcam++") -> dict:
    x = ex.check_input(x)
    targets = np.asarray(targets)
    if variant not in ("gradcam++", "relevancecam"):
        raise OnnxCamError(f"variant must be 'gradcam++' or 'relevancecam', got {variant!r}")
    maps = check_maps(maps, len(x), image_size(ex))
    if variant == "relevancecam":
        median = np.median(maps.reshape(len(maps), -1), axis=1)[:, None, None]
        maps = np.where(maps >= median, maps, 0.0).astype(np.float32)
    y = class_probability(ex, x, targets)
    o = class_probability(ex, x * as_nchw_mask(ex, maps), targets)
    size = np.abs(y)   # y itself for a probability
    drops = np.where(size > 0, np.maximum(0.0, y - o) / np.where(size > 0, size, 1.0), (o < y).astype(np.float64))
    if variant == "relevancecam":
        positive = drops > 0
        drop = float(drops[positive].mean() * 100) if positive.any() else 0.0
    else:
        drop = float(drops.mean() * 100)
    return {"average_drop": drop, "increase_in_confidence": float((o > y).mean() * 100),
            "per_image_drop": (drops * 100).tolist(), "per_image_increase": ((o > y) * 100.0).tolist(),
            "variant": variant}
