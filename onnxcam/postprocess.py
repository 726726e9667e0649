"""Raw maps -> heatmaps in [0, 1] at input resolution, and overlays.

Two orders exist in the reference implementations and they give different pixels, so each method
names its own: "relu_minmax_resize" (pytorch-grad-cam: ReLU and min-max at feature resolution,
bilinear resize, then min-max once more because the resize rarely reaches the old maximum) and
"resize_relu_minmax" (official Score-CAM: upsample first). Bilinear here is cv2.INTER_LINEAR, the
half-pixel grid of F.interpolate(align_corners=False).
"""
from __future__ import annotations

import cv2
import numpy as np

EPS = 1e-7


def minmax(maps: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-image (x - min) / (max - min + eps) over the last two axes."""
    lo = maps.min(axis=(-2, -1), keepdims=True)
    hi = maps.max(axis=(-2, -1), keepdims=True)
    return ((maps - lo) / (hi - lo + eps)).astype(np.float32)


def resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of [N, h, w] to [N, H, W] (size = (H, W))."""
    h, w = size
    return np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                     for m in maps])


def normalize(raw: np.ndarray, size: tuple[int, int], order: str = "relu_minmax_resize") -> np.ndarray:
    if order == "relu_minmax_resize":
        return minmax(resize(minmax(np.maximum(raw, 0)), size))
    if order == "resize_relu_minmax":
        return minmax(np.maximum(resize(raw, size), 0))
    raise ValueError(f"unknown normalization order {order!r}")


def colorize(heat: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 RGB with the JET colormap."""
    u8 = np.uint8(np.clip(heat, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(view: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a heatmap over the uint8 RGB view the model saw."""
    if view.shape[:2] != heat.shape:
        heat = cv2.resize(heat, (view.shape[1], view.shape[0]), interpolation=cv2.INTER_LINEAR)
    mixed = (1 - alpha) * view.astype(np.float32) + alpha * colorize(heat).astype(np.float32)
    return np.uint8(np.clip(mixed, 0, 255))
