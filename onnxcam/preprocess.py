"""Images in, model-ready float32 batches out, following a `PreprocessSpec`.

The spec comes from a bundled model's manifest, a sidecar JSON next to the model
(`MODEL.onnx.json` or `MODEL.json`), or explicit values; later sources override earlier ones.
"""
from __future__ import annotations

import difflib
import io
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
MAX_CHANNELS = 512   # OpenCV resizes at most this many channels at once
# How a colour picture becomes one channel: ITU-R BT.601 luma (OpenCV's COLOR_RGB2GRAY), or one channel
GRAY_FROM = {"luma": (0.299, 0.587, 0.114), "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0),
             "blue": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn an image file into one model input.

    size: (H, W) the model expects. resize: "stretch" to (H, W), "center_crop" (resize the
    shorter side to size/crop_fraction, then crop the centre), or "letterbox" (keep the aspect
    ratio, fit the longer side, pad the rest with grey LETTERBOX_FILL). scale multiplies raw 0..255 pixels
    before (x - mean) / std. channel_order is the order the model wants (files are read as RGB).

    Pixels are in 8-bit units before `scale`, whatever the file holds, so one spec serves 8- and
    16-bit files of the same picture: uint8 as is, uint16 x 255/65535 (as float32, nothing rounded),
    float (TIFF, .npy) x 255 (read as 0..1 intensities), other integers (int16 CT) as stored.
    window (CENTER, WIDTH), in the values the file stores, replaces that mapping DICOM-style:
    clamp((x - (CENTER - WIDTH/2)) / WIDTH, 0, 1) x 255.
    channels: what the model takes (None: the model's own, 3 outside an Explainer); colour files
    for a 1-channel model become grey by `grayscale` ("luma": ITU-R BT.601 weights 0.299, 0.587,
    0.114 as OpenCV's COLOR_RGB2GRAY, or one of "red", "green", "blue"); grey files for a
    3-channel model are repeated. mean/std have 1 value or one per channel; ImageNet's defaults
    become 0 and 1 for a model that does not take 3 channels.
    """
    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "stretch"
    crop_fraction: float = 0.875
    channels: int | None = None
    grayscale: str = "luma"
    window: tuple[float, float] | None = None

    def __post_init__(self):
        """Check every field (the API gets the CLI's checks) and store tuples of plain numbers."""
        size = _numbers("size", self.size, integer=True)
        if len(size) != 2 or not all(1 <= v <= MAX_SIDE for v in size):
            raise OnnxCamError(f"size must be two integers H W between 1 and {MAX_SIDE}, got {describe(self.size)}")
        channels = None if self.channels is None else _numbers("channels", (self.channels,), integer=True)[0]
        if channels is not None and not 1 <= channels <= MAX_CHANNELS:
            raise OnnxCamError(f"channels must be an integer between 1 and {MAX_CHANNELS}, got {describe(self.channels)}")
        mean, std = _numbers("mean", self.mean), _numbers("std", self.std)
        if channels not in (None, 3):   # ImageNet's statistics are for RGB; other inputs say theirs
            mean = (0.0,) if mean == IMAGENET_MEAN else mean
            std = (1.0,) if std == IMAGENET_STD else std
        for name, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels or 3):
                raise OnnxCamError(f"{name} must have 1 value or {channels or 3} (one per channel), got {len(values)}")
        if any(v == 0 for v in std):
            raise OnnxCamError("std must not contain zeros (images are divided by it)")
        (scale,) = _numbers("scale", (self.scale,))
        if scale <= 0:
            raise OnnxCamError(f"scale must be a positive number (1/255 for 0..1 inputs), got {scale}")
        (crop,) = _numbers("crop_fraction", (self.crop_fraction,))
        if not MIN_CROP <= crop <= 1:
            raise OnnxCamError(f"crop_fraction must be between {MIN_CROP} and 1 (ImageNet uses 0.875), got {crop}")
        window = None if self.window is None else _numbers("window", self.window)
        if window is not None and (len(window) != 2 or window[1] <= 0):
            raise OnnxCamError(f"window must be two numbers CENTER WIDTH with WIDTH > 0, got {describe(self.window)}")
        for name, value, allowed in (("grayscale", self.grayscale, tuple(GRAY_FROM)),
                                     ("channel_order", self.channel_order, ("RGB", "BGR")),
                                     ("layout", self.layout, ("NCHW", "NHWC")),
                                     ("resize", self.resize, ("stretch", "center_crop", "letterbox"))):
            if not isinstance(value, str) or value not in allowed:
                raise OnnxCamError(f"{name} must be {' or '.join(map(repr, allowed))}, got {describe(value)}")
        for name, value in (("size", size), ("mean", mean), ("std", std), ("scale", scale),
                            ("crop_fraction", crop), ("channels", channels), ("window", window)):
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
    """Read an image file as uint8 RGB [H, W, 3] (grey repeated, alpha dropped, 16-bit and float
    brought to 8 bits); one clear error for anything unreadable, and a pixel cap checked on the
    header before anything is decoded."""
    return to_display(model_pixels(read_pixels(path), PreprocessSpec(), f"image {path}", drop_alpha=True))


def read_pixels(path: str | Path) -> np.ndarray:
    """An image file or a .npy array at full precision: [H, W, C] as stored (uint8, uint16,
    float32 ...), C = 1 grey, 3 RGB, 4 RGBA (or RGB+NIR), or any count for .npy; colour in RGB order.

    PNG, TIFF and WebP are decoded unchanged (16 bits, alpha, float TIFF); other formats through
    OpenCV's colour path, which also applies a JPEG's EXIF orientation."""
    p = Path(path)
    data = read_bytes(p, "image", "image")
    if not data:
        raise OnnxCamError(f"image {p} is empty (0 bytes): copy the complete file")
    if data.startswith(NPY_MAGIC):
        return read_npy(data, p)
    claimed = image_size(data)
    if claimed is None:  # an unknown format could claim any size, and OpenCV would allocate it
        raise OnnxCamError(f"cannot read image {p}: its header does not say its size (not PNG, JPEG, BMP, "
                           "TIFF, WebP, GIF, PNM or .npy, or cut short); convert it to PNG or JPEG")
    if claimed[0] * claimed[1] > MAX_PIXELS:
        raise _too_many_pixels(p, *claimed)
    unchanged = data.startswith((b"\x89PNG", b"II*\x00", b"MM\x00*")) or data[8:12] == b"WEBP"
    flags = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    try:
        with captured_stderr() as decoder_said:  # libpng/libjpeg/libtiff warnings, OpenCV's log
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise OnnxCamError(f"cannot read image {p}: OpenCV refused it, e.g. over its pixel limit "
                           f"or corrupted ({first_line(exc, 160)})") from None
    if img is None:
        said = decoder_said.first_line()
        raise OnnxCamError(f"cannot read image {p}: not an image format OpenCV decodes, or truncated "
                           "(use PNG, JPEG, BMP, TIFF or WebP)" + (f" (decoder: {said})" if said else ""))
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise _too_many_pixels(p, img.shape[1], img.shape[0])
    img = img[..., None] if img.ndim == 2 else img
    if img.shape[2] in (3, 4):  # OpenCV decodes BGR(A)
        img = img[..., [2, 1, 0, 3][:img.shape[2]]]
    if img.dtype.kind not in "uif" or img.dtype.itemsize > 4:
        img = img.astype(np.float32 if img.dtype.kind == "f" else np.float64)
    return _finite(np.ascontiguousarray(img), f"image {p}")


NPY_MAGIC = b"\x93NUMPY"


def read_npy(data: bytes, p: Path) -> np.ndarray:
    """A .npy array as pixels [H, W, C] (or [H, W]); never unpickled, numbers only, finite."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OnnxCamError(f"cannot read array {p}: not a plain numeric .npy file, or truncated "
                           f"({first_line(exc, 120)}); save it with np.save(path, array)") from None
    if arr.dtype.kind not in "uif":
        raise OnnxCamError(f"array {p} has dtype {arr.dtype}; give integers or floats (pixels [H, W] or [H, W, C])")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise OnnxCamError(f"array {p} has shape {arr.shape}; give one image as [H, W] or [H, W, C] (channels last)")
    if arr.shape[2] > MAX_CHANNELS:
        hint = "channels last: np.save(path, a.transpose(1, 2, 0))" if arr.shape[0] <= MAX_CHANNELS else \
            f"at most {MAX_CHANNELS} channels"
        raise OnnxCamError(f"array {p} has shape {arr.shape}, {arr.shape[2]} channels; {hint}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise _too_many_pixels(p, arr.shape[1], arr.shape[0])
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype.itemsize > 4:
        arr = arr.astype(np.float64)
    return _finite(np.ascontiguousarray(arr), f"array {p}")


def _finite(pixels: np.ndarray, what: str) -> np.ndarray:
    """Float pixels (float TIFF, .npy) that are all finite, or one line why not."""
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise OnnxCamError(f"{what} contains NaN or infinite values (or values beyond float32); fix the data")
    return pixels


def _full_scale(dtype: np.dtype) -> float | None:
    """The stored value that means white, in 8-bit units (see PreprocessSpec); None: as stored."""
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype),
                                                                          1.0 if np.dtype(dtype).kind == "f" else None)


def model_pixels(raw: np.ndarray, spec: PreprocessSpec, what: str = "image",
                 drop_alpha: bool = False) -> np.ndarray:
    """Pixels as read ([H, W, C], any dtype) with the model's channel count, in 8-bit units
    (PreprocessSpec says how): uint8 when nothing needs more, float32 otherwise.

    A 4th channel that is fully opaque alpha is dropped for 1- and 3-channel models; any other
    4th channel (transparency, near infrared) is refused there, since dropping it silently would
    explain a picture the model was not meant to see (drop_alpha: drop it anyway, for display)."""
    want, have = spec.channels or 3, raw.shape[2]
    x = raw
    if have == 4 and want in (1, 3):
        full = _full_scale(raw.dtype)
        if not drop_alpha and (full is None or not (raw[..., 3] == full).all()):
            raise OnnxCamError(f"{what} has 4 channels (RGBA with transparency, or RGB + near infrared) but "
                               f"the model takes {want}; drop the 4th channel if it is alpha (save as RGB, or img[..., :3])")
        x, have = raw[..., :3], 3
    if have == 3 and want == 1:
        x = x.astype(np.float32) @ np.asarray(GRAY_FROM[spec.grayscale], np.float32)[:, None]
    elif have == 1 and want == 3:
        x = np.repeat(x, 3, axis=2)
    elif have != want:
        hint = ("channels last: a.transpose(1, 2, 0)" if raw.shape[0] == want else
                "give a 4-channel PNG/TIFF (RGBA, RGB + near infrared) or a .npy [H, W, 4]" if want == 4 else
                f"give a .npy array [H, W, {want}]")
        raise OnnxCamError(f"{what} has {raw.shape[2]} channel(s) but the model takes {want}; {hint}")
    if spec.window is not None:
        center, width = spec.window
        low = center - width / 2
        return np.clip((x.astype(np.float64) - low) / width, 0, 1).astype(np.float32) * np.float32(255)
    full = _full_scale(raw.dtype)
    if x.dtype == np.uint8 or (full is None and x.dtype == np.float32):
        return np.ascontiguousarray(x)
    with np.errstate(over="ignore"):   # beyond float32: to_input says so in one line
        x = x.astype(np.float32) if full is None else x.astype(np.float32) * np.float32(255.0 / full)
    return np.ascontiguousarray(x)


def to_display(pixels: np.ndarray) -> np.ndarray:
    """Model pixels (model_pixels) as the uint8 RGB picture overlays are drawn on: grey repeated,
    RGB(A) as its RGB, other channel counts as their mean in grey."""
    x = pixels
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    c = x.shape[2]
    if c == 1:
        x = np.repeat(x, 3, axis=2)
    elif c == 4:
        x = x[..., :3]
    elif c != 3:
        x = np.repeat(np.rint(x.mean(axis=2, keepdims=True)).astype(np.uint8), 3, axis=2)
    return np.ascontiguousarray(x)


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


def fit_view(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The view the model sees (resized/cropped/padded to spec.size, see ViewGeometry), with the
    channels and dtype of `pixels` ([H, W, C]: uint8 RGB, or model_pixels' output)."""
    g = view_geometry(pixels.shape[:2], spec)
    h, w = g.size
    resized = cv2.resize(pixels, (g.resized_w, g.resized_h), interpolation=cv2.INTER_LINEAR)
    resized = resized.reshape(g.resized_h, g.resized_w, -1)   # OpenCV drops a single channel's axis
    if (g.resized_h, g.resized_w, g.top, g.left) == (h, w, 0, 0):
        return resized
    view = np.full((h, w, resized.shape[2]), LETTERBOX_FILL, pixels.dtype)
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
    """Views in 8-bit units (fit_view: uint8 RGB, or float32 of any channel count) -> float32
    batch in the model's layout and channel order."""
    x = np.stack(views).astype(np.float32)
    if spec.channel_order == "BGR" and x.shape[-1] >= 3:
        x = x[..., [2, 1, 0] + list(range(3, x.shape[-1]))]
    with np.errstate(over="ignore", invalid="ignore"):
        x = (x * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if not np.isfinite(x).all():
        raise OnnxCamError(f"preprocessing turns pixels into numbers beyond float32's range (scale "
                           f"{spec.scale:g}, std {', '.join(f'{s:g}' for s in spec.std)}); check --scale and --std")
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_images(paths, spec: PreprocessSpec, return_views: bool = False, return_photos: bool = False):
    """Read image files (or .npy arrays) into a float32 batch; with return_views also the uint8 RGB
    views the model sees, with return_photos also the photos as read (uint8 RGB at full resolution,
    grey pictures as RGB grey, for overlays mapped back onto them: onnxcam.mapback). Each file is
    read and decoded once, at full precision (16-bit, float).
    Returns x, or (x, views), (x, photos) or (x, views, photos)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise OnnxCamError(f"images must be a path or a list of paths, got {describe(paths)}")
    photos, views, shown = [], [], []
    for p in paths:
        pixels = model_pixels(read_pixels(p), spec, f"image {p}")
        views.append(fit_view(pixels, spec))
        if return_views:
            shown.append(to_display(views[-1]))
        if return_photos:   # otherwise let each full-size photo go as soon as its view exists
            photos.append(to_display(pixels))
    if not views:
        raise OnnxCamError("no images given")
    x = to_input(views, spec)
    out = (x,) + ((shown,) if return_views else ()) + ((photos,) if return_photos else ())
    return out[0] if len(out) == 1 else out
