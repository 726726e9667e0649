"""Perturbation maps from masked forwards only (no gradient): Occlusion and RISE.

Both multiply the image by masks at the input's size inside one graph (graph/masking.py with
eps=None: masks used as given), batched under the memory budget like Score-CAM's.

- `occlusion` (Zeiler & Fergus, ECCV 2014; Captum's `Occlusion`): a window of `window` pixels
  slides with `stride` over the image; each position is set to 0 in the model's input space (the
  normalized value Captum's default baseline gives) and the drop S(x) − S(x occluded) is credited
  to every pixel of the window; each pixel gets the mean over the windows covering it. Captum
  places windows only where they fit; here a last window is added flush with the right and bottom
  edges when the stride does not reach them, so no pixel is left without a value (Captum leaves
  NaN there). Where the stride tiles the image the two are identical.
- `rise` (Petsiuk et al., BMVC 2018): `masks` random binary grids of `grid`×`grid` cells kept
  with probability `keep` (p), upsampled bilinearly to (grid+1)·cell and cropped at a random shift to the
  input, as the paper's code does; map = Σ_i f(x ⊙ M_i) M_i / (masks · p), f = the softmax
  probability of the target class for class scores (the paper's), the raw score otherwise.
  Draws come from numpy's PCG64 with `seed`.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..postprocess import softmax
from . import options as opt
from .base import Method, Request, register, scores_and_targets

INPUT = "input"
MASKS_PER_CALL = 64   # masks generated and sent at once: bounds the float32 masks held in memory
DEFAULTS = {"masks": 1000, "grid": 7, "keep": 0.5}


def _image_hw(req: Request) -> tuple[int, int]:
    return tuple(req.explainer.model.image_shape[1:])


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins along one side: every stride, plus one flush with the end if needed."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _occlusion(req: Request) -> dict[str, np.ndarray]:
    h, w = _image_hw(req)
    window = opt.option(req, "window", max(1, min(h, w) // 8), opt.pixels(min(h, w)))
    stride = opt.option(req, "stride", max(1, window // 2), opt.pixels(min(h, w)))
    scores, targets = scores_and_targets(req)
    boxes = [(y, x) for y in window_starts(h, window, stride) for x in window_starts(w, window, stride)]
    out = np.zeros((len(req.x), h, w))
    for i in range(len(req.x)):
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for j in range(0, len(boxes), MASKS_PER_CALL):
            chunk = boxes[j:j + MASKS_PER_CALL]
            masks = np.ones((len(chunk), 1, h, w), np.float32)
            for k, (y, x) in enumerate(chunk):
                masks[k, 0, y:y + window, x:x + window] = 0.0
            s = req.explainer.masked_scores(req.x[i:i + 1], masks, align_corners=False, eps=None,
                                            what="Occlusion")
            drop = scores[i, targets[i]].astype(np.float64) - s[:, targets[i]]
            covered = 1.0 - masks[:, 0].astype(np.float64)
            total += np.einsum("m,mhw->hw", drop, covered)
            count += covered.sum(axis=0)
        out[i] = total / count
    return {INPUT: out.astype(np.float32)}


def rise_masks(rng: np.random.Generator, count: int, grid: int, p: float, hw: tuple[int, int]) -> np.ndarray:
    """RISE masks [count, 1, H, W] in [0, 1]: binary grid cells upsampled bilinearly, shifted."""
    h, w = hw
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    up_h, up_w = (grid + 1) * cell_h, (grid + 1) * cell_w
    cells = (rng.random((count, grid, grid)) < p).astype(np.float32)
    shifts = rng.integers(0, [cell_h, cell_w], size=(count, 2))
    out = np.empty((count, 1, h, w), np.float32)
    for k in range(count):
        big = cv2.resize(cells[k], (up_w, up_h), interpolation=cv2.INTER_LINEAR)
        dy, dx = shifts[k]
        out[k, 0] = big[dy:dy + h, dx:dx + w]
    return out


def _rise(req: Request) -> dict[str, np.ndarray]:
    count = opt.option(req, "masks", DEFAULTS["masks"], opt.count)
    grid = opt.option(req, "grid", DEFAULTS["grid"], opt.pixels(min(_image_hw(req))))
    p = opt.option(req, "keep", DEFAULTS["keep"], opt.probability)
    rng = np.random.default_rng(opt.option(req, "seed", 0, opt.seed))
    _, targets = scores_and_targets(req)
    probabilities = req.explainer.model.class_scores
    hw = _image_hw(req)
    out = np.zeros((len(req.x),) + hw)
    for j in range(0, count, MASKS_PER_CALL):
        masks = rise_masks(rng, min(MASKS_PER_CALL, count - j), grid, p, hw)
        for i in range(len(req.x)):
            s = req.explainer.masked_scores(req.x[i:i + 1], masks, align_corners=False, eps=None, what="RISE")
            f = softmax(s)[:, targets[i]] if probabilities else s[:, targets[i]]
            out[i] += np.einsum("m,mhw->hw", f.astype(np.float64), masks[:, 0].astype(np.float64))
    return {INPUT: (out / (count * p)).astype(np.float32)}


register(Method("occlusion", "Occlusion", "Zeiler & Fergus, Visualizing and Understanding Convolutional "
                "Networks, ECCV 2014 (Captum's Occlusion)", _occlusion, options=("window", "stride"),
                own_run=True))
register(Method("rise", "RISE", "Petsiuk et al., RISE: Randomized Input Sampling for Explanation of "
                "Black-box Models, BMVC 2018", _rise, options=("masks", "grid", "keep", "seed"), own_run=True))
