"""Test-time augmentation smoothing (pytorch-grad-cam's `aug_smooth`): explain the image under six
augmentations, map each heatmap back, and average.

The augmentations are pytorch-grad-cam's: a horizontal flip or none, times the preprocessed input
multiplied by 0.9, 1 or 1.1 (ttach's HorizontalFlip × Multiply). Each map (in [0, 1], at input
resolution) is flipped back where the image was flipped; the result is their mean, not normalized
again, as pytorch-grad-cam leaves it. One difference, on purpose: the class explained under every
augmentation is the one chosen on the unaugmented image (the given target, else its top-1), where
pytorch-grad-cam without targets takes each augmented image's own top-1; averaging maps of
different classes would explain none of them. Works with every method: the augmented batch is
just another batch.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import OnnxCamError

FLIPS = (False, True)
FACTORS = (0.9, 1.0, 1.1)


def check_flag(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise OnnxCamError(f"option aug_smooth (--aug-smooth) must be True or False, got {value!r}")
    return bool(value)


def aug_smooth(explainer, x: np.ndarray, method: str, layers, target, **options):
    """The Result of explain(x, ...) with maps averaged over the six augmentations of x (a
    preprocessed batch); raw maps, scores and weights are those of the unaugmented run."""
    width_axis = 3 if explainer.model.layout == "NCHW" else 2
    if target is None and explainer.model.default_target is None:
        target = explainer.forward(x)[0].argmax(axis=1)
    plain = explainer.explain(x, method, layers, target, **options)
    total = {name: np.zeros_like(m, np.float64) for name, m in plain.maps.items()}
    for flip in FLIPS:
        for factor in FACTORS:
            if not flip and factor == 1.0:
                result = plain
            else:
                moved = np.ascontiguousarray(np.flip(x, width_axis) if flip else x) * np.float32(factor)
                result = explainer.explain(moved.astype(np.float32), method, layers, target, **options)
            for name, m in result.maps.items():
                total[name] += m[..., ::-1] if flip else m
    count = len(FLIPS) * len(FACTORS)
    maps = {name: (t / count).astype(np.float32) for name, t in total.items()}
    return replace(plain, maps=maps, notes=plain.notes + [
        f"aug_smooth: mean of {count} maps (horizontal flip or none × input scaled by 0.9, 1, 1.1)"])
