"""Heatmaps back on the user's photo: undo the preprocessing's geometry (stretch, centre crop,
letterbox) so a map lines up with the photo's own pixels and aspect ratio.

The geometry is preprocess.view_geometry, the same that fit_view uses to make the model's view
and view_box uses for boxes, so the three can never disagree.

Photo pixels the model never saw (outside a centre crop) have no explanation: they are NaN in the
returned arrays, and postprocess.overlay draws them dimmed and hatched rather than inventing heat
for them. Letterbox padding is the other way round (view pixels that are not the photo) and is
simply dropped.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import OnnxCamError, describe
from .preprocess import PreprocessSpec, view_geometry


def _map_2d(heat, what: str = "map") -> np.ndarray:
    """One map as a finite-or-NaN float32 [h, w] array, or one line why not."""
    try:
        heat = np.asarray(heat, dtype=np.float32)
    except (TypeError, ValueError):
        raise OnnxCamError(f"{what} must be a 2-D array of numbers [h, w], got {describe(heat)}") from None
    if heat.ndim != 2 or heat.size == 0:
        raise OnnxCamError(f"{what} must be a 2-D array [h, w] with at least one value, got shape {heat.shape}")
    return heat


def _size(size, what: str = "size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise OnnxCamError(f"{what} must be two integers (H, W), got {describe(size)}") from None
    if h < 1 or w < 1 or h * w > 2**28:
        raise OnnxCamError(f"{what} must be two integers (H, W) between 1 and 16384x16384, got {(h, w)}")
    return h, w


def to_photo(heat, image_hw: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """A map over the model's view [h, w] (any resolution: feature, input, ...) as float32 [H, W] on
    the photo of image_hw = (H, W) that the view was made from; NaN where the model did not look.

    The map is brought to the view's size, put into the frame of the resized photo (cropped for
    letterbox padding; edge values extended over the parts a centre crop cut off, so bilinear
    sampling at the crop's edge does not mix in anything), resized to the photo with cv2.resize
    (bilinear, half-pixel grid) and the unseen pixels set to NaN. For "stretch" this is exactly
    cv2.resize of the view-sized map to (W, H).
    """
    heat = _map_2d(heat)
    ph, pw = _size(image_hw, "image size")
    g = view_geometry((ph, pw), spec)
    frame, holes = _to_frame(heat, g, cv2.INTER_LINEAR), None
    if np.isnan(heat).any():   # a map's own holes stay holes
        holes = _to_frame(np.isnan(heat).astype(np.float32), g, cv2.INTER_NEAREST)
    out = cv2.resize(frame, (pw, ph), interpolation=cv2.INTER_LINEAR)
    if holes is not None:
        out[cv2.resize(holes, (pw, ph), interpolation=cv2.INTER_NEAREST) > 0] = np.nan
    seen = seen_mask((ph, pw), spec)
    if not seen.all():
        out[~seen] = np.nan
    return out


def _to_frame(heat: np.ndarray, g, interpolation: int) -> np.ndarray:
    """heat over the view, at the view's size, in the resized photo's frame (resized_h, resized_w)."""
    h, w = g.size
    view = np.nan_to_num(heat, nan=0.0)
    if view.shape != (h, w):
        view = cv2.resize(view, (w, h), interpolation=interpolation)
    if g.top >= 0 and g.left >= 0:   # stretch (no offset) or centre crop: extend the edges outwards
        return cv2.copyMakeBorder(view, g.top, g.resized_h - h - g.top, g.left, g.resized_w - w - g.left,
                                  cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(view[-g.top:-g.top + g.resized_h, -g.left:-g.left + g.resized_w])   # letterbox


def seen_mask(image_hw: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """bool [H, W]: photo pixels whose centres lie inside the model's view."""
    ph, pw = _size(image_hw, "image size")
    g = view_geometry((ph, pw), spec)
    x0, y0, x1, y1 = g.seen_box()
    xs, ys = np.arange(pw) + 0.5, np.arange(ph) + 0.5
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def scale_map(heat, size: tuple[int, int]) -> np.ndarray:
    """A map min-max scaled to [0, 1] and resized (bilinear) to size = (H, W): the counterpart of
    pytorch-grad-cam's scale_cam_image (which takes (W, H)). Takes [h, w] or a stack [N, h, w];
    NaN stays NaN and is left out of the min and max. A constant map becomes all zeros."""
    h, w = _size(size)
    arr = np.asarray(heat, dtype=np.float32)
    if arr.ndim == 3:
        return np.stack([scale_map(m, (h, w)) for m in arr]) if len(arr) else np.zeros((0, h, w), np.float32)
    arr = _map_2d(arr)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.full((h, w), np.nan, np.float32)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    unit = np.where(finite, (arr - lo) / (hi - lo) if hi > lo else 0.0, np.nan).astype(np.float32)
    return to_photo(unit, (h, w), PreprocessSpec(size=unit.shape))
