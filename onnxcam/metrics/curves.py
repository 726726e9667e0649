"""Deletion and Insertion (Petsiuk et al., RISE, BMVC 2018).

Pixels are ranked by the map (highest first). Deletion replaces them, `steps` equal chunks at a
time, by the baseline; insertion starts from the baseline and puts them back. The class
probability after each step (steps + 1 points, the untouched start included) gives a curve whose
area (trapezoid rule on [0, 1]) is the score: low for deletion and high for insertion is good.
Baselines: "zero" (0 in the preprocessed space, i.e. the dataset mean), "blur" (Gaussian, sigma 5;
RISE's insertion canvas) and "mean" (each image's own mean colour). All perturbed images of a call
go through onnxruntime in batches.
"""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError
from .common import blurred, check_maps, class_probability, image_size


BASELINES = ("zero", "blur", "mean")


def _baseline(ex, x, kind):
    if kind == "zero":
        return np.zeros_like(x)
    if kind == "blur":
        return blurred(ex, x)
    if kind == "mean":
        axes = (2, 3) if ex.model.layout == "NCHW" else (1, 2)
        return np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape).copy()
    raise OnnxCamError(f"baseline must be 'zero', 'blur' or 'mean', got {kind!r}")


def _curve(ex, start, end, order, steps, target):
    """Probabilities as the ranked pixels move from `start` to `end` in `steps` equal chunks."""
    counts = np.linspace(0, order.size, steps + 1).round().astype(int)
    spatial = start.shape[1:] if ex.model.layout == "NCHW" else start.shape[:2]
    images = []
    for c in counts:
        chosen = np.zeros(order.size, bool)
        chosen[order[:c]] = True
        mask = chosen.reshape((1,) + spatial) if ex.model.layout == "NCHW" else chosen.reshape(spatial + (1,))
        images.append(np.where(mask, end, start))
    return class_probability(ex, np.stack(images).astype(np.float32), np.full(len(images), target))


def deletion_insertion(ex, x: np.ndarray, maps: np.ndarray, targets, steps: int = 50,
                       baseline: str = "zero", insertion_baseline: str = "blur") -> dict:
    """AUCs and curves per image: {"deletion": [...], "insertion": [...], "curves": {...}}."""
    x = ex.check_input(x)
    targets = np.asarray(targets)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise OnnxCamError(f"steps must be a whole number >= 1, got {steps!r}")
    maps = check_maps(maps, len(x), image_size(ex))
    dele, ins = _baseline(ex, x, baseline), _baseline(ex, x, insertion_baseline)
    out = {"deletion": [], "insertion": [], "curves": {"deletion": [], "insertion": []},
           "steps": steps, "baseline": baseline, "insertion_baseline": insertion_baseline}
    for i in range(len(x)):
        order = np.argsort(-maps[i].ravel(), kind="stable")
        img = x[i]
        d = _curve(ex, img, dele[i], order, steps, targets[i])
        n = _curve(ex, ins[i], img, order, steps, targets[i])
        for key, curve in (("deletion", d), ("insertion", n)):
            out[key].append(float(np.trapezoid(curve, dx=1.0 / steps)))
            out["curves"][key].append(curve.tolist())
    return out
