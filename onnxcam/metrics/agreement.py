"""How alike two heatmaps of the same image are (DESIGN §7, between two builds of one model).

All three figures are defined for every pair of maps, so a broken build shows as a low number,
never as NaN: a constant map carries no ranking, and agrees with nothing but another constant map;
a map with NaN or infinite pixels agrees with nothing.

- Pearson correlation of the pixel values.
- Spearman rank correlation with tied pixels given their average rank (ReLU'd CAMs are mostly ties
  at 0; ranking ties by position would make two maps agree on where their zeros are stored).
- IoU of the top-k% regions: the pixels at or above each map's (100-k)-th percentile; when that
  percentile is the map's floor (a ReLU'd CAM that is zero on more than 100-k% of the image), the
  pixels above the floor.
"""
from __future__ import annotations

import numpy as np


def _constant(a: np.ndarray) -> bool:
    return bool(np.ptp(a) == 0)


def _degenerate(a, b) -> float | None:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0
    ca, cb = _constant(a), _constant(b)
    if ca and cb:
        return 1.0
    return 0.0 if ca or cb else None


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    edge = _degenerate(a, b)
    if edge is not None:
        return edge
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a flat array, ties sharing the mean of their ranks (as scipy's rankdata)."""
    v = np.asarray(values).ravel()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(v)]
    mean_rank = (starts + ends - 1) / 2.0
    ranks = np.empty(len(v), np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    edge = _degenerate(np.asarray(a), np.asarray(b))
    if edge is not None:
        return edge
    return pearson(average_ranks(a), average_ranks(b))


def top_region(a: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of the pixels in the top `percent` % of the map (ties at the cut included)."""
    a = np.asarray(a, np.float64)
    if _constant(a):
        return np.zeros(a.shape, bool)
    cut = np.percentile(a, 100.0 - percent)
    return a > cut if cut <= a.min() else a >= cut


def topk_iou(a: np.ndarray, b: np.ndarray, percent: float = 20.0) -> float:
    edge = _degenerate(np.asarray(a), np.asarray(b))
    if edge is not None:
        return edge
    ra, rb = top_region(a, percent), top_region(b, percent)
    union = np.logical_or(ra, rb).sum()
    return float(np.logical_and(ra, rb).sum() / union) if union else 0.0


def map_agreement(a: np.ndarray, b: np.ndarray, percent: float = 20.0) -> dict[str, float]:
    """Pearson, Spearman and top-k% IoU of two [H, W] maps, and their largest pixel difference."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()
    return {"pearson": pearson(a, b), "spearman": spearman(a, b), "iou": topk_iou(a, b, percent),
            "max_abs_difference": float(diff) if np.isfinite(diff) else None}
