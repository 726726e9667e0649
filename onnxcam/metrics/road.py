"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

Pixels are removed in map order, most relevant first (MoRF) or least relevant first (LeRF), at
10 %, 20 %, ... 90 %, and each removed pixel is replaced by the noisy linear imputation of the paper:
its value is the weighted mean of its 8 neighbours (1/6 for the direct ones, 1/12 for the diagonal
ones, only those inside the image), solved jointly for all removed pixels, plus Gaussian noise
(std `noise`, 0.01 as in the authors' code) on the imputed pixels. Imputation happens per channel
in the preprocessed space. The class probability at each percentage forms the curve; a faithful map
makes MoRF fall fast and LeRF stay high.

The linear system (symmetric, diagonally dominant) is solved matrix-free by conjugate gradients
with an OpenCV 3x3 stencil, so no sparse solver is needed; 1e-8 on the diagonal keeps a removed
region with no known neighbour well posed (it then tends to 0, the dataset mean).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError, describe
from .common import check_maps, class_probability, image_size

KERNEL = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _stencil(img: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, cv2.CV_64F, KERNEL, borderType=cv2.BORDER_CONSTANT)


def impute(channels: np.ndarray, removed: np.ndarray, noise: float = 0.01, seed: int = 0,
           tol: float = 1e-20, max_iter: int = 5000) -> np.ndarray:
    """Noisy linear imputation of the `removed` pixels [H, W] of each channel of [C, H, W]."""
    removed = removed.astype(bool)
    keep = ~removed
    diag = _stencil(np.ones(removed.shape)) + 1e-8
    out = channels.astype(np.float64).copy()
    rng = np.random.default_rng(seed)
    for c in range(out.shape[0]):
        b = np.where(removed, _stencil(np.where(keep, out[c], 0.0)), 0.0)

        def apply(v):
            return np.where(removed, diag * v - _stencil(np.where(removed, v, 0.0)), 0.0)
        v = np.where(removed, b / diag, 0.0)               # Jacobi start, then conjugate gradients
        r = b - apply(v)
        p = r.copy()
        rr = float((r * r).sum())
        stop = tol * max(float((b * b).sum()), 1e-30)
        for _ in range(max_iter):
            if rr <= stop:
                break
            ap = apply(p)
            alpha = rr / float((p * ap).sum())
            v += alpha * p
            r -= alpha * ap
            rr_new = float((r * r).sum())
            p = r + (rr_new / rr) * p
            rr = rr_new
        out[c] = np.where(removed, v + noise * rng.standard_normal(v.shape), out[c])
    return out.astype(channels.dtype)


def road(ex, x: np.ndarray, maps: np.ndarray, targets, percentages=(10, 20, 30, 40, 50, 60, 70, 80, 90),
         order: str = "morf", noise: float = 0.01, seed: int = 0) -> dict:
    """Class probability after removing p % of the pixels (MoRF or LeRF) with ROAD's imputation."""
    if order not in ("morf", "lerf"):
        raise OnnxCamError(f"order must be 'morf' or 'lerf', got {order!r}")
    x = ex.check_input(x)
    targets = np.asarray(targets)
    maps = check_maps(maps, len(x), image_size(ex))
    if not percentages or not all(isinstance(p, (int, float, np.integer, np.floating)) and 0 < p <= 100
                                  for p in percentages):
        raise OnnxCamError(f"percentages must be numbers in (0, 100], got {describe(percentages)}")
    nchw = ex.model.layout == "NCHW"
    curves = []
    for i in range(len(x)):
        rank = np.argsort(-maps[i].ravel() if order == "morf" else maps[i].ravel(), kind="stable")
        img = x[i] if nchw else x[i].transpose(2, 0, 1)
        batch = []
        for p in percentages:
            removed = np.zeros(rank.size, bool)
            removed[rank[: int(round(rank.size * p / 100))]] = True
            filled = impute(img, removed.reshape(maps[i].shape), noise, seed)
            batch.append(filled if nchw else filled.transpose(1, 2, 0))
        curves.append(class_probability(ex, np.stack(batch).astype(np.float32),
                                        np.full(len(batch), targets[i])).tolist())
    curves_arr = np.asarray(curves)
    return {"order": order, "percentages": list(percentages), "curves": curves,
            "mean_curve": curves_arr.mean(axis=0).tolist(), "mean": float(curves_arr.mean())}
