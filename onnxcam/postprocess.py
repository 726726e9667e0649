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

from .errors import OnnxCamError
from .mapback import to_photo
from .preprocess import PreprocessSpec

EPS = 1e-7


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (class probabilities from logits)."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


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


def normalize(raw: np.ndarray, size: tuple[int, int], order: str = "relu_minmax_resize",
              final: bool = True) -> np.ndarray:
    """final=False leaves out the min-max after the resize (pytorch-grad-cam's per-layer maps
    before it combines layers: onnxcam.fusion)."""
    if order == "relu_minmax_resize":
        up = resize(minmax(np.maximum(raw, 0)), size)
        return minmax(up) if final else up
    if order == "resize_relu_minmax":
        return minmax(np.maximum(resize(raw, size), 0))
    if order == "minmax_resize":  # no ReLU (Relevance-CAM keeps negative evidence until min-max)
        up = resize(minmax(raw), size)
        return minmax(up) if final else up
    if order == "signed":  # 0.5 = no relevance; ±(99.5th percentile of |R|) -> 1 / 0 (see signed_scale)
        return resize(0.5 + 0.5 * signed_scale(raw), size).astype(np.float32)
    raise ValueError(f"unknown normalization order {order!r}")


SIGNED_PERCENTILE = 99.5


def signed_scale(raw: np.ndarray, percentile: float = SIGNED_PERCENTILE, gamma: float = 1.0) -> np.ndarray:
    """Signed relevance [..., H, W] -> [-1, 1] per map, 0 staying 0: divided by the `percentile`-th
    percentile of |R| over the map and clipped, then sign(v)·|v|^gamma.

    Why a percentile: LRP relevance is heavy-tailed (a few pixels on edges hold most of it), so
    scaling by max|R| as Zennit's `imgify(symmetric=True)` and iNNvestigate's `project` do leaves
    nearly every pixel at the colormap's centre; the 99.5th percentile saturates the top 0.5% and
    shows the rest (iNNvestigate's `clip_quantile` clips at a percentile the same way). gamma < 1
    lifts weak relevance (iNNvestigate's sign-preserving `gamma`). Where the percentile is 0 (a
    map with over 99.5% zeros) the maximum is used; an all-zero map stays 0. Raw values are not
    changed: this is for drawing (Result.raw keeps R)."""
    raw = np.nan_to_num(np.asarray(raw, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mag = np.abs(raw)
    axes = (-2, -1)
    scale = np.percentile(mag, percentile, axis=axes, keepdims=True)
    scale = np.where(scale > 0, scale, mag.max(axis=axes, keepdims=True))
    v = np.clip(raw / np.where(scale > 0, scale, 1.0), -1.0, 1.0)
    if gamma != 1.0:
        v = np.sign(v) * np.abs(v) ** gamma
    return v.astype(np.float32)


COLORMAPS = {name[len("COLORMAP_"):].lower(): getattr(cv2, name)
             for name in sorted(dir(cv2)) if name.startswith("COLORMAP_")}   # jet, turbo, inferno, viridis, ...


def check_style(colormap: str = "jet", alpha: float = 0.5) -> None:
    """One line for a colormap OpenCV does not have or an alpha outside 0..1."""
    if not isinstance(colormap, str) or colormap.lower() not in COLORMAPS:
        raise OnnxCamError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= float(alpha) <= 1:
        raise OnnxCamError(f"alpha must be a number from 0 (photo only) to 1 (heatmap only), got {alpha!r}")


def colorize(heat: np.ndarray, diverging: bool = False, colormap: str = "jet") -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 RGB: an OpenCV colormap (default JET), or blue-white-red around 0.5
    for signed relevance (diverging, whatever the colormap)."""
    heat = np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0)  # a broken build's map still draws
    if diverging:
        t = np.clip(heat, 0, 1)[..., None].astype(np.float32)
        blue, white, red = np.array([0, 0, 255.0]), np.array([255.0, 255, 255]), np.array([255.0, 0, 0])
        rgb = np.where(t < 0.5, blue + (white - blue) * (t / 0.5), white + (red - white) * ((t - 0.5) / 0.5))
        return np.uint8(np.clip(rgb, 0, 255))
    check_style(colormap)
    u8 = np.uint8(np.clip(heat, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLORMAPS[colormap.lower()]), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, diverging: bool = False,
            colormap: str = "jet", preprocess: PreprocessSpec | None = None) -> np.ndarray:
    """A heatmap blended over a uint8 RGB image (the counterpart of pytorch-grad-cam's
    show_cam_on_image): `image` is a photo of any size [H, W, 3], `heat` a map in [0, 1] of any
    size. With `preprocess` (the explainer's PreprocessSpec) the map is taken to be over the
    model's view of this photo and mapped back through its crop or padding (mapback.to_photo);
    without it, a map of another size is stretched over the image. NaN pixels (parts of the photo
    the model never saw) are drawn dimmed and hatched, without heat. alpha: 0 = photo only,
    1 = heatmap only. diverging: blue-white-red around 0.5 for signed maps instead of colormap."""
    check_style(colormap, alpha)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise OnnxCamError(f"overlay takes a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    heat = np.asarray(heat, np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise OnnxCamError(f"overlay takes one map [h, w], got shape {heat.shape}")
    if preprocess is not None:
        heat = to_photo(heat, image.shape[:2], preprocess)
    elif image.shape[:2] != heat.shape:
        heat = to_photo(heat, image.shape[:2], PreprocessSpec(size=heat.shape))
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colorize(heat, diverging, colormap).astype(np.float32)
    unseen = np.isnan(heat)
    if unseen.any():
        mixed[unseen] = hatched(image)[unseen]
    return np.uint8(np.clip(mixed, 0, 255))


def hatched(image: np.ndarray) -> np.ndarray:
    """The image dimmed to a third with thin grey diagonal lines: 'no explanation here'."""
    h, w = image.shape[:2]
    period = max(8, round(max(h, w) / 40))
    yy, xx = np.mgrid[0:h, 0:w]
    lines = ((xx + yy) % period) < max(1, period // 6)
    out = image.astype(np.float32) * 0.33
    out[lines] = 150.0
    return out


def pixels_to_rgb(pixels: np.ndarray, channel_order: str = "RGB", diverging: bool = False) -> np.ndarray:
    """A signed [C, H, W] pixel attribution as a viewable uint8 RGB image. Gradients (guided
    backprop): standardized, scaled by 0.1 around mid-grey, each channel its colour. Relevance
    (diverging=True, LRP): Σ_c R through the blue-white-red colormap, white = 0, scaled as the
    maps are (signed_scale): the heatmap Zennit and iNNvestigate draw, without the photo."""
    if diverging:
        return colorize(0.5 + 0.5 * signed_scale(pixels.sum(axis=0)), diverging=True)
    img = pixels.transpose(1, 2, 0).astype(np.float64)
    img = (img - img.mean()) / (img.std() + 1e-5) * 0.1 + 0.5
    img = np.uint8(np.clip(img, 0, 1) * 255)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img[..., ::-1].copy() if channel_order == "BGR" else img


def grid(tiles: list[np.ndarray], labels: list[str], cols: int = 4) -> np.ndarray:
    """Tiles (uint8 RGB, same size) in rows of `cols`, each captioned (per-layer overviews)."""
    h, w = tiles[0].shape[:2]
    bar = 16
    rows = (len(tiles) + cols - 1) // cols
    canvas = np.full((rows * (h + bar), cols * w, 3), 255, np.uint8)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        r, c = divmod(k, cols)
        y, x = r * (h + bar), c * w
        canvas[y + bar:y + bar + h, x:x + w] = tile
        limit = w // 6
        text = label if len(label) <= limit else label[:limit // 3] + ".." + label[-(limit - limit // 3 - 2):]
        cv2.putText(canvas, text, (x + 2, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
