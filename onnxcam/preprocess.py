"""Images in, model-ready float32 batches out, following a `PreprocessSpec`.

The spec comes from a bundled model's manifest, a sidecar JSON next to the model
(`MODEL.onnx.json` or `MODEL.json`), or explicit values; later sources override earlier ones.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxCamError, describe, first_line
from .files import MAX_PIXELS, read_bytes, read_text
from .image_header import image_size
from .quiet import captured_stderr

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SIDE = 8192     # the largest model input side onnxcam accepts (size H W)
MIN_CROP = 0.05     # center_crop resizes the image by 1/crop_fraction before cropping
LETTERBOX_FILL = 114  # letterbox pads with this grey (0..255 before scale/mean/std), as YOLO-style exports do


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn an image file into one model input.

    size: (H, W) the model expects. resize: "stretch" to (H, W), "center_crop" (resize the
    shorter side to size/crop_fraction, then crop the centre), or "letterbox" (keep the aspect
    ratio, fit the longer side, pad the rest with grey LETTERBOX_FILL). scale multiplies raw 0..255 pixels
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
        """Check every field (the API gets the CLI's checks) and store tuples of plain numbers."""
        size = _numbers("size", self.size, integer=True)
        if len(size) != 2 or not all(1 <= v <= MAX_SIDE for v in size):
            raise OnnxCamError(f"size must be two integers H W between 1 and {MAX_SIDE}, got {describe(self.size)}")
        mean, std = _numbers("mean", self.mean), _numbers("std", self.std)
        for name, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, 3):
                raise OnnxCamError(f"{name} must have 1 value or 3 (one per RGB channel), got {len(values)}")
        if any(v == 0 for v in std):
            raise OnnxCamError("std must not contain zeros (images are divided by it)")
        (scale,) = _numbers("scale", (self.scale,))
        if scale <= 0:
            raise OnnxCamError(f"scale must be a positive number (1/255 for 0..1 inputs), got {scale}")
        (crop,) = _numbers("crop_fraction", (self.crop_fraction,))
        if not MIN_CROP <= crop <= 1:
            raise OnnxCamError(f"crop_fraction must be between {MIN_CROP} and 1 (ImageNet uses 0.875), got {crop}")
        for name, value, allowed in (("channel_order", self.channel_order, ("RGB", "BGR")),
                                     ("layout", self.layout, ("NCHW", "NHWC")),
                                     ("resize", self.resize, ("stretch", "center_crop", "letterbox"))):
            if not isinstance(value, str) or value not in allowed:
                raise OnnxCamError(f"{name} must be {' or '.join(map(repr, allowed))}, got {describe(value)}")
        for name, value in (("size", size), ("mean", mean), ("std", std), ("scale", scale),
                            ("crop_fraction", crop)):
            object.__setattr__(self, name, value)

    def updated(self, **changes) -> PreprocessSpec:
        """A copy with the given non-None fields changed (checked again by __post_init__)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


def spec_from_dict(data: dict, base: PreprocessSpec | None = None, strict: bool = True,
                   notes: list | None = None) -> PreprocessSpec:
    """Read the fields we know from a manifest/sidecar dict (`input_size` is accepted for size).

    Other keys are ignored: a manifest also carries name, labels, source, license ..., and a
    manifest is a valid --preprocess file. With `strict` (what the user hands over: --preprocess,
    preprocess=), a key one typo away from a field (`meen`, `chanel_order`) is refused, since
    ignoring it would silently preprocess with the default instead; a sidecar found next to the
    model is read with strict=False, as its other keys (`inputs`, `input_shape` ...) are someone
    else's format: a near-miss key there is ignored and said in `notes`.
    """
    if not isinstance(data, dict):
        raise OnnxCamError(f"preprocessing must be a PreprocessSpec or a dict of its fields, "
                           f"got {type(data).__name__}")
    known = [f.name for f in fields(PreprocessSpec)] + ["input_size"]
    for key in data:
        close = difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.75)
        if key not in known and close:
            if strict:
                raise OnnxCamError(f"unknown preprocessing field {key!r}: did you mean {close[0]!r}?")
            if notes is not None:
                notes.append(f"the sidecar's key {key!r} is not a preprocessing field and was ignored "
                             f"(if you meant {close[0]!r}, rename it)")
    values = {k: v for k, v in data.items() if k in known and k != "input_size"}
    if "input_size" in data and "size" not in values:
        values["size"] = data["input_size"]
    return (base or PreprocessSpec()).updated(**values)


def _numbers(name: str, value, integer: bool = False) -> tuple:
    """A field as a tuple of finite Python numbers; one line for strings, None, bools, NaN."""
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, (int, float, np.number)) and not isinstance(items, (bool, np.bool_)):
        items = (items,)
    if not isinstance(items, (list, tuple)):
        raise OnnxCamError(f"{name} must be {'integers' if integer else 'numbers'}, got {describe(value)}")
    out = []
    for v in items:
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if ok and integer and not isinstance(v, (int, np.integer)):
            ok = float(v).is_integer()
        if not ok or not np.isfinite(float(v)):
            raise OnnxCamError(f"{name} must be finite {'integers' if integer else 'numbers'}, got {describe(value)}")
        out.append(int(v) if integer else float(v))
    return tuple(out)


def find_sidecar(model_path: str | Path) -> Path | None:
    """The preprocessing file next to a model: MODEL.onnx.json, MODEL.json, or manifest.json."""
    p = Path(model_path)
    if not p.name:  # "", ".", "/": no file name to put a sidecar beside; loading says what is wrong
        return None
    for candidate in (p.with_name(p.name + ".json"), p.with_suffix(".json"), p.parent / "manifest.json"):
        if candidate.is_file():
            return candidate
    return None


def read_labels(path: Path) -> list[str]:
    """Class names, one per line, in index order (UTF-8, at most a few MiB)."""
    text = read_text(path, "labels", "label file")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; one clear error for anything unreadable,
    and a pixel cap checked on the header before anything is decoded."""
    p = Path(path)
    data = read_bytes(p, "image", "image")
    if not data:
        raise OnnxCamError(f"image {p} is empty (0 bytes): copy the complete file")
    claimed = image_size(data)
    if claimed is None:  # an unknown format could claim any size, and OpenCV would allocate it
        raise OnnxCamError(f"cannot read image {p}: its header does not say its size (not PNG, JPEG, BMP, "
                           "TIFF, WebP, GIF or PNM, or cut short); convert it to PNG or JPEG")
    if claimed[0] * claimed[1] > MAX_PIXELS:
        raise _too_many_pixels(p, *claimed)
    try:
        with captured_stderr() as decoder_said:  # libpng/libjpeg/libtiff warnings, OpenCV's log
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise OnnxCamError(f"cannot read image {p}: OpenCV refused it, e.g. over its pixel limit "
                           f"or corrupted ({first_line(exc, 160)})") from None
    if img is None:
        said = decoder_said.first_line()
        raise OnnxCamError(f"cannot read image {p}: not an image format OpenCV decodes, or truncated "
                           "(use PNG, JPEG, BMP, TIFF or WebP)" + (f" (decoder: {said})" if said else ""))
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise _too_many_pixels(p, img.shape[1], img.shape[0])
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _too_many_pixels(p: Path, w: int, h: int) -> OnnxCamError:
    return OnnxCamError(f"cannot read image {p}: it is {w}x{h} pixels (by its header), over onnxcam's "
                        f"limit of {MAX_PIXELS // 10**6} megapixels (8192x8192); downscale it first "
                        "(the model sees it resized anyway), or the file is corrupted")


@dataclass(frozen=True)
class ViewGeometry:
    """Where the photo lands in the view the model sees; the one place this geometry is written.

    The photo is resized to (resized_h, resized_w), then the view is the window of spec.size whose
    top-left corner sits at (top, left) in resized pixels: positive offsets crop (center_crop),
    negative ones pad (letterbox), zero with resized == size is a plain stretch. fit_view draws the
    view, view_box maps boxes into it and onnxcam.mapback maps heatmaps back out of it.
    """
    photo_h: int
    photo_w: int
    resized_h: int
    resized_w: int
    top: int
    left: int
    size: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Resized pixels per photo pixel, along x and y."""
        return self.resized_w / self.photo_w, self.resized_h / self.photo_h

    def photo_to_view(self, x: float, y: float) -> tuple[float, float]:
        """A point in photo pixels (edge coordinates: 0 .. W) in view pixels (0 .. w)."""
        fx, fy = self.scale_xy
        return x * fx - self.left, y * fy - self.top

    def view_to_photo(self, u: float, v: float) -> tuple[float, float]:
        """The inverse of photo_to_view."""
        fx, fy = self.scale_xy
        return (u + self.left) / fx, (v + self.top) / fy

    def seen_box(self) -> tuple[float, float, float, float]:
        """The part of the photo the model sees, (x0, y0, x1, y1) in photo pixels (edge coordinates)."""
        h, w = self.size
        x0, y0 = self.view_to_photo(0, 0)
        x1, y1 = self.view_to_photo(w, h)
        return max(0.0, x0), max(0.0, y0), min(float(self.photo_w), x1), min(float(self.photo_h), y1)


def view_geometry(image_hw: tuple[int, int], spec: PreprocessSpec) -> ViewGeometry:
    """The ViewGeometry of a photo of (H, W) pixels under spec.resize (stretch, center_crop, letterbox)."""
    ph, pw = int(image_hw[0]), int(image_hw[1])
    h, w = spec.size
    if spec.resize == "center_crop":
        f = int(round(min(h, w) / spec.crop_fraction)) / min(ph, pw)
        rh, rw = max(h, int(round(ph * f))), max(w, int(round(pw * f)))
        if rh * rw > MAX_PIXELS:
            raise OnnxCamError(f"a {pw}x{ph} image is too elongated to center-crop "
                               f"(it would be resized to {rw}x{rh}); crop it first or use resize 'stretch'")
        return ViewGeometry(ph, pw, rh, rw, (rh - h) // 2, (rw - w) // 2, (h, w))
    if spec.resize == "letterbox":
        f = min(h / ph, w / pw)
        rh, rw = min(h, max(1, int(round(ph * f)))), min(w, max(1, int(round(pw * f))))
        return ViewGeometry(ph, pw, rh, rw, -((h - rh) // 2), -((w - rw) // 2), (h, w))
    return ViewGeometry(ph, pw, h, w, 0, 0, (h, w))


def fit_view(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 RGB view the model sees (resized/cropped/padded to spec.size, see ViewGeometry)."""
    g = view_geometry(rgb.shape[:2], spec)
    h, w = g.size
    resized = cv2.resize(rgb, (g.resized_w, g.resized_h), interpolation=cv2.INTER_LINEAR)
    if (g.resized_h, g.resized_w, g.top, g.left) == (h, w, 0, 0):
        return resized
    view = np.full((h, w, 3), LETTERBOX_FILL, np.uint8)
    # the overlap of the resized photo and the view window, in both frames
    y0, x0 = max(0, g.top), max(0, g.left)
    y1, x1 = min(g.resized_h, g.top + h), min(g.resized_w, g.left + w)
    view[y0 - g.top:y1 - g.top, x0 - g.left:x1 - g.left] = resized[y0:y1, x0:x1]
    return view


def view_box(box, image_hw: tuple[int, int], spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """A box given as fractions of the original photo, in pixels of the view the model sees
    (the same geometry as fit_view: see ViewGeometry)."""
    g = view_geometry(image_hw, spec)
    x0, y0 = g.photo_to_view(box[0] * g.photo_w, box[1] * g.photo_h)
    x1, y1 = g.photo_to_view(box[2] * g.photo_w, box[3] * g.photo_h)
    return (x0, y0, x1, y1)


def to_input(views: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """uint8 RGB views -> float32 batch in the model's layout and channel order."""
    x = np.stack(views).astype(np.float32)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    with np.errstate(over="ignore", invalid="ignore"):
        x = (x * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if not np.isfinite(x).all():
        raise OnnxCamError(f"preprocessing turns pixels into numbers beyond float32's range (scale "
                           f"{spec.scale:g}, std {', '.join(f'{s:g}' for s in spec.std)}); check --scale and --std")
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_images(paths, spec: PreprocessSpec, return_views: bool = False, return_photos: bool = False):
    """Read image files into a float32 batch; with return_views also the uint8 RGB views the model
    sees, with return_photos also the photos as read (uint8 RGB at full resolution, for overlays
    mapped back onto them: onnxcam.mapback). Each file is read and decoded once.
    Returns x, or (x, views), (x, photos) or (x, views, photos)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise OnnxCamError(f"images must be a path or a list of paths, got {describe(paths)}")
    photos, views = [], []
    for p in paths:
        photo = read_rgb(p)
        views.append(fit_view(photo, spec))
        if return_photos:   # otherwise let each full-size photo go as soon as its view exists
            photos.append(photo)
    if not views:
        raise OnnxCamError("no images given")
    x = to_input(views, spec)
    out = (x,) + ((views,) if return_views else ()) + ((photos,) if return_photos else ())
    return out[0] if len(out) == 1 else out
