"""Pointing game (Zhang et al., Top-down neural attention by excitation backprop, ECCV 2016) and its
energy-based form (Wang et al., Score-CAM, 2020).

hit/miss: the map's maximum falls inside the object (boxes or a mask), with a tolerance of
`tolerance` pixels (15 in the original protocol); energy: the share of the map's total inside the
object. Boxes are (x0, y0, x1, y1) in map pixel coordinates, x1/y1 exclusive.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError, describe
from .common import check_maps


def object_mask(shape, boxes=None, mask=None) -> np.ndarray:
    if mask is not None:
        return np.asarray(mask, bool)
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes or []:
        m[max(0, int(y0)):int(y1), max(0, int(x0)):int(x1)] = True
    return m


def _check_objects(maps: np.ndarray, boxes, masks) -> None:
    """One list of finite (x0, y0, x1, y1) boxes, or one [H, W] mask, per map."""
    if (boxes is None) == (masks is None):
        raise OnnxCamError("pointing_game needs boxes or masks (exactly one of them)")
    given = boxes if boxes is not None else masks
    if not hasattr(given, "__len__") or len(given) != len(maps):
        raise OnnxCamError(f"pointing_game got {describe(given)} for {len(maps)} maps: give one "
                           f"{'list of boxes' if boxes is not None else 'mask'} per map")
    for i in range(len(maps)):
        if masks is not None:
            if np.shape(masks[i]) != maps[i].shape:
                raise OnnxCamError(f"mask {i} has shape {np.shape(masks[i])}, its map {maps[i].shape}")
            continue
        try:
            arr = np.asarray(boxes[i], np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise OnnxCamError(f"boxes of image {i} must be (x0, y0, x1, y1) numbers, got "
                               f"{describe(boxes[i])}") from None
        if not np.isfinite(arr).all():
            raise OnnxCamError(f"boxes of image {i} contain NaN or infinite coordinates")


def pointing_game(maps: np.ndarray, boxes=None, masks=None, tolerance: int = 15) -> dict:
    """boxes: per image a list of boxes; masks: per image a boolean [H, W] (either one)."""
    maps = check_maps(maps)
    _check_objects(maps, boxes, masks)
    hits, energy = [], []
    for i, m in enumerate(maps):
        obj = object_mask(m.shape, boxes[i] if boxes is not None else None,
                          masks[i] if masks is not None else None)
        y, x = np.unravel_index(np.argmax(m), m.shape)
        near = obj
        if tolerance > 0:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
            near = cv2.dilate(obj.astype(np.uint8), k).astype(bool)
        hits.append(bool(near[y, x]))
        total = float(np.clip(m, 0, None).sum())
        energy.append(float(np.clip(m, 0, None)[obj].sum() / total) if total > 0 else 0.0)
    return {"hit_rate": float(np.mean(hits)), "hits": hits, "energy": energy,
            "mean_energy": float(np.mean(energy))}
