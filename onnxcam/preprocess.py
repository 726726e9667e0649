"""Images in, model-ready float32 batches out, following a `PreprocessSpec`.

The spec comes from a bundled model's manifest, a sidecar JSON next to the model
(`MODEL.onnx.json` or `MODEL.json`), or explicit values; later sources override earlier ones.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxCamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn an image file into one model input.

    size: (H, W) the model expects. resize: "stretch" to (H, W), or "center_crop" (resize the
    shorter side to size/crop_fraction, then crop the centre). scale multiplies raw 0..255 pixels
    before (x - mean) / std. channel_order is the order the model wants (files are read as RGB).
    """
    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "stretch"
    crop_fraction: float = 0.875

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise OnnxCamError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise OnnxCamError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.resize not in ("stretch", "center_crop"):
            raise OnnxCamError(f"resize must be 'stretch' or 'center_crop', got {self.resize!r}")
        if any(s == 0 for s in self.std):
            raise OnnxCamError("std must not contain zeros")

    def updated(self, **changes) -> PreprocessSpec:
        """A copy with the given non-None fields changed (lists become tuples)."""
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in changes.items() if v is not None}
        return replace(self, **clean)

    def to_dict(self) -> dict:
        return asdict(self)


def spec_from_dict(data: dict, base: PreprocessSpec | None = None) -> PreprocessSpec:
    """Read the fields we know from a manifest/sidecar dict (`input_size` is accepted for size)."""
    known = {f.name for f in fields(PreprocessSpec)}
    values = {k: v for k, v in data.items() if k in known}
    if "input_size" in data and "size" not in values:
        values["size"] = data["input_size"]
    return (base or PreprocessSpec()).updated(**values)


def find_sidecar(model_path: str | Path) -> Path | None:
    """The preprocessing file next to a model: MODEL.onnx.json, MODEL.json, or manifest.json."""
    p = Path(model_path)
    for candidate in (p.with_name(p.name + ".json"), p.with_suffix(".json"), p.parent / "manifest.json"):
        if candidate.is_file():
            return candidate
    return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise OnnxCamError(f"cannot read {path}: {exc}") from None


def read_labels(path: Path) -> list[str]:
    """Class names, one per line, in index order."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise OnnxCamError(f"cannot read label file {path}: {exc.strerror}") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; one clear error for anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise OnnxCamError(f"image not found: {p}")
    raw = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        raise OnnxCamError(f"cannot read image {p}: not an image format OpenCV decodes "
                           "(use PNG, JPEG, BMP, TIFF or WebP)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def fit_view(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 RGB view the model sees (resized/cropped to spec.size): overlays are drawn on it."""
    h, w = spec.size
    if spec.resize == "center_crop":
        short = min(rgb.shape[:2])
        target_short = int(round(min(h, w) / spec.crop_fraction))
        f = target_short / short
        rh, rw = max(h, int(round(rgb.shape[0] * f))), max(w, int(round(rgb.shape[1] * f)))
        rgb = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
        top, left = (rh - h) // 2, (rw - w) // 2
        return np.ascontiguousarray(rgb[top:top + h, left:left + w])
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)


def view_box(box, image_hw: tuple[int, int], spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """A box given as fractions of the original photo, in pixels of the view the model sees
    (the same geometry as fit_view: stretch, or shorter-side resize + centre crop)."""
    h, w = image_hw
    x0, y0, x1, y1 = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
    th, tw = spec.size
    if spec.resize == "center_crop":
        f = int(round(min(th, tw) / spec.crop_fraction)) / min(h, w)
        rh, rw = max(th, int(round(h * f))), max(tw, int(round(w * f)))
        top, left = (rh - th) // 2, (rw - tw) // 2
        fx, fy = rw / w, rh / h
        return (x0 * fx - left, y0 * fy - top, x1 * fx - left, y1 * fy - top)
    return (x0 * tw / w, y0 * th / h, x1 * tw / w, y1 * th / h)


def to_input(views: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """uint8 RGB views -> float32 batch in the model's layout and channel order."""
    x = np.stack(views).astype(np.float32)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_images(paths, spec: PreprocessSpec, return_views: bool = False):
    """Read image files into a float32 batch; with return_views also the uint8 RGB views."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    views = [fit_view(read_rgb(p), spec) for p in paths]
    if not views:
        raise OnnxCamError("no images given")
    x = to_input(views, spec)
    return (x, views) if return_views else x
