"""Whatever a user hands to `Explainer.explain`, as the float32 batch the model runs on.

Why its own module: the engine runs preprocessed batches, but a user's first call is with a
photo: a path, a numpy array from imageio/OpenCV, a PIL image. Each kind has one rule, so nothing
is guessed from values:

- str / os.PathLike, or a list of them: image files or .npy arrays, read by
  `preprocess.read_pixels` (regular files only, size and pixel caps checked before decoding).
- uint8 and uint16 numpy arrays are pixels: [H, W, 3] one image, [H, W] or [H, W, 1] grey,
  [H, W, C] any channel count (RGBA, RGB + NIR ...), [N, H, W, C] a stack; uint16 keeps 16-bit
  precision, as a 16-bit file does. Colour is RGB unless `color_order="BGR"` (what cv2.imread returns).
- an object with `.convert("RGB")` and `__array__` or `__array_interface__` (a PIL image;
  duck-typed, so onnxcam never imports PIL): grey ("L") and RGBA kept, other modes converted to RGB.
- a list or tuple of such images (their sizes may differ) or of paths.
- anything else is a preprocessed batch (float, [N, C, H, W] or [N, H, W, C]) and goes to
  `Explainer.check_input` unchanged, as before.

Pixel images go through the same `model_pixels` + `fit_view` + `to_input` as files (the spec's
channels, grayscale and window), so an array and the file it came from give the same batch. The
originals are returned too (uint8 RGB at their own resolution, grey inputs as RGB grey), for
overlays drawn on the user's photo.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from .errors import OnnxCamError, describe, first_line
from .files import MAX_PIXELS
from .preprocess import PreprocessSpec, fit_view, model_pixels, read_pixels, to_display, to_input

#: What `Explainer.explain` accepts (see the module docstring for the rules).
ImageInput = Union[str, "os.PathLike[str]", np.ndarray, Any, Sequence[Any]]

COLOR_ORDERS = ("RGB", "BGR")
PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16))   # integer arrays that are pictures, not batches


def is_path(item) -> bool:
    return isinstance(item, (str, os.PathLike))


def is_pil_like(item) -> bool:
    """An image object onnxcam can convert without importing its library (PIL.Image)."""
    return callable(getattr(item, "convert", None)) and not isinstance(item, np.ndarray) \
        and (hasattr(item, "__array__") or hasattr(item, "__array_interface__"))  # Pillow >= 9: the latter


def _is_pixels(item) -> bool:
    return is_pil_like(item) or (isinstance(item, np.ndarray) and item.dtype in PIXEL_TYPES)


def to_batch(x, spec: PreprocessSpec, color_order: str = "RGB") -> tuple[Any, list[np.ndarray] | None]:
    """(batch, originals): a float32 batch for images given as files or pixels, with their uint8
    RGB originals; for anything else (a preprocessed batch) x itself and None, left for
    `Explainer.check_input` to check."""
    if not isinstance(color_order, str) or color_order not in COLOR_ORDERS:
        raise OnnxCamError(f"color_order must be 'RGB' or 'BGR' (the channel order of uint8 arrays you "
                           f"pass; cv2.imread gives BGR), got {describe(color_order)}")
    if isinstance(x, bytes):
        raise OnnxCamError("input is bytes; give a path to the image file, a uint8 RGB array or a "
                           "preprocessed float batch")
    if is_path(x):
        items = [x]
    elif isinstance(x, (list, tuple)):
        if not x:
            raise OnnxCamError("input is an empty list; give at least one image")
        if not (all(is_path(i) for i in x) or all(_is_pixels(i) for i in x)):
            if any(is_path(i) or _is_pixels(i) for i in x):
                raise OnnxCamError(f"input list mixes kinds ({', '.join(sorted({_kind(i) for i in x}))}); "
                                   "give only paths, only images (uint8 arrays / PIL), or one float batch")
            return x, None          # nested lists of numbers: a preprocessed batch
        items = list(x)
    elif isinstance(x, np.ndarray) and x.dtype in PIXEL_TYPES:
        items = list(x) if x.ndim == 4 else [x]
    elif is_pil_like(x):
        items = [x]
    else:
        return x, None
    views, originals = [], []
    for i, item in enumerate(items):
        pixels = model_pixels(_pixels(item, i, color_order), spec, f"image {i}")
        views.append(fit_view(pixels, spec))
        originals.append(to_display(pixels))
    return to_input(views, spec), originals


def _kind(item) -> str:
    if is_path(item):
        return "paths"
    if is_pil_like(item):
        return "PIL images"
    if isinstance(item, np.ndarray):
        return f"{item.dtype} arrays"
    return type(item).__name__


def _pixels(item, index: int, color_order: str) -> np.ndarray:
    """One image as a C-contiguous [H, W, C] array (RGB order), or one line why not."""
    if is_path(item):
        return read_pixels(Path(item))
    if is_pil_like(item):
        size = getattr(item, "size", None)   # PIL: (width, height), known before converting
        if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
            _check_pixels(index, size[1], size[0])
        mode = "L" if getattr(item, "mode", None) == "L" else "RGBA" if getattr(item, "mode", None) == "RGBA" else "RGB"
        try:
            arr = np.asarray(item.convert(mode))
        except Exception as exc:  # noqa: BLE001 (a foreign library: whatever it raises is one line)
            raise OnnxCamError(f"image {index}: cannot convert {type(item).__name__} to RGB "
                               f"({type(exc).__name__}: {first_line(exc, 120)})") from None
        arr = arr[..., None] if arr.ndim == 2 else arr
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != len(mode):
            raise OnnxCamError(f"image {index}: {type(item).__name__}.convert({mode!r}) gave {arr.dtype} "
                               f"{arr.shape}, not uint8 [H, W, {len(mode)}]; pass np.asarray(image) instead")
        return np.ascontiguousarray(arr)
    if not isinstance(item, np.ndarray) or item.dtype not in PIXEL_TYPES:
        raise OnnxCamError(f"image {index} is {describe(item)}; give uint8 pixels [H, W, 3], a PIL image or a path")
    arr = item[..., None] if item.ndim == 2 else item
    if arr.ndim != 3 or (arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4)):
        hint = ("channels last: img.transpose(1, 2, 0)" if arr.ndim == 3 else
                "give one image [H, W, C], a stack [N, H, W, C], or a float32 preprocessed batch")
        raise OnnxCamError(f"{arr.dtype} image {index} has shape {arr.shape}; {arr.dtype} arrays are pixels [H, W], "
                           f"[H, W, C] (RGB, RGBA ...); {hint}")
    _check_pixels(index, arr.shape[0], arr.shape[1])
    if color_order == "BGR" and arr.shape[2] >= 3:
        arr = arr[..., [2, 1, 0] + list(range(3, arr.shape[2]))]
    return np.ascontiguousarray(arr)


def _check_pixels(index: int, h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise OnnxCamError(f"image {index} is {w}x{h} pixels: empty; give a real image")
    if h * w > MAX_PIXELS:
        raise OnnxCamError(f"image {index} is {w}x{h} pixels, over onnxcam's limit of "
                           f"{MAX_PIXELS // 10**6} megapixels (8192x8192); downscale it first "
                           "(the model sees it resized anyway)")
