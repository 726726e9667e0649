"""Boxes and region outlines drawn on overlays: the detection a map explains (with its class and
score), the other detections faint, a segmentation mask's contour.

Marks are given in the pixels of the view the model saw and drawn on either picture the figures
make: the view itself (--at model) or the photo at its own resolution (--at photo), through the
same ViewGeometry that maps the heatmaps back (preprocess.view_geometry), so a box sits exactly
on the heat it explains, letterbox or not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import OnnxCamError
from .preprocess import PreprocessSpec, view_geometry
from .render import FONT, _ascii, text_scale

CHOSEN = (255, 255, 255)     # the explained detection: white, with a dark rim, readable on any heat
OTHERS = (230, 230, 230)     # the other detections: thin, half-transparent light grey
MAX_FAINT = 10               # at most this many other detections drawn (the most confident)
RIM = (20, 20, 20)


def _thickness(image: np.ndarray) -> int:
    return max(2, int(round(max(image.shape[:2]) / 250)))


def draw_boxes(image: np.ndarray, boxes, labels=None, colours=None, faint: bool = False) -> np.ndarray:
    """A copy of a uint8 RGB image [H, W, 3] with xyxy boxes (its pixels) drawn, each with its label
    (class and score) in a filled tag above it (inside when the box touches the top edge).
    faint: thin half-transparent lines, no labels (the detections that are not explained)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise OnnxCamError(f"draw_boxes takes a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = list(labels) if labels is not None else [None] * len(boxes)
    colours = list(colours) if colours is not None else [OTHERS if faint else CHOSEN] * len(boxes)
    out = image.copy()
    h, w = out.shape[:2]
    t = 1 if faint else _thickness(out)
    scale = text_scale(w, h, per_line=45.0)
    for box, label, colour in zip(boxes, labels, colours):
        if not np.all(np.isfinite(box)):
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in (np.clip(box[0], 0, w - 1), np.clip(box[1], 0, h - 1),
                                                    np.clip(box[2], 0, w - 1), np.clip(box[3], 0, h - 1)))
        if not faint:
            cv2.rectangle(out, (x0, y0), (x1, y1), RIM, t + 2, cv2.LINE_AA)
        cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(c) for c in colour), t, cv2.LINE_AA)
        if label and not faint:
            text = _ascii(label)
            (tw, th), base = cv2.getTextSize(text, FONT, scale, max(1, t // 2))
            ty = y0 - base - 2 if y0 - th - base - 4 >= 0 else y0 + th + t + 2
            tx = min(max(0, x0), max(0, w - tw - 4))
            cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 4, ty + base), RIM, -1)
            cv2.putText(out, text, (tx + 2, ty), FONT, scale, tuple(int(c) for c in colour), max(1, t // 2),
                        cv2.LINE_AA)
    return cv2.addWeighted(out, 0.5, image, 0.5, 0) if faint else out


def outline_mask(image: np.ndarray, mask, colour=CHOSEN) -> np.ndarray:
    """A copy of a uint8 RGB image with the contour of a region (mask [h, w], nonzero = in, resized
    nearest-neighbour to the image when smaller or larger) drawn over it, with a dark rim."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise OnnxCamError(f"outline_mask takes a 2-D mask [h, w], got shape {mask.shape}")
    h, w = image.shape[:2]
    region = (mask != 0).astype(np.uint8)
    if region.shape != (h, w):
        region = cv2.resize(region, (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = image.copy()
    t = _thickness(out)
    cv2.drawContours(out, contours, -1, RIM, t + 2, cv2.LINE_AA)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), t, cv2.LINE_AA)
    return out


@dataclass
class Marks:
    """What is drawn on one image's overlays, in view pixels: the explained box(es) with labels,
    the other boxes faint (the first MAX_FAINT: give them best first), a region mask; `caption` replaces the figure's target line (a
    detection's class and score instead of S's column), `info` goes to the JSON summary."""
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: list = field(default_factory=list)
    faint: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    mask: np.ndarray | None = None
    caption: str | None = None
    info: dict = field(default_factory=dict)

    def draw(self, picture: np.ndarray, photo_hw: tuple[int, int] | None, spec: PreprocessSpec) -> np.ndarray:
        """The marks on `picture`: the model's view (photo_hw None) or the photo of photo_hw."""
        if self.mask is not None:
            mask = self.mask
            if photo_hw is not None:
                from .mapback import to_photo
                mask = np.nan_to_num(to_photo(mask.astype(np.float32), photo_hw, spec)) >= 0.5
            picture = outline_mask(picture, mask)
        to = (lambda b: b) if photo_hw is None else (lambda b: view_boxes_to_photo(b, photo_hw, spec))
        if len(self.faint):
            picture = draw_boxes(picture, to(self.faint[:MAX_FAINT]), faint=True)
        if len(self.boxes):
            picture = draw_boxes(picture, to(self.boxes), self.labels)
        return picture


def view_boxes_to_photo(boxes, photo_hw: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """xyxy boxes in view pixels as photo pixels (the inverse of preprocess.view_box's mapping)."""
    g = view_geometry(photo_hw, spec)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = g.view_to_photo(boxes[:, 0], boxes[:, 1])
    x1, y1 = g.view_to_photo(boxes[:, 2], boxes[:, 3])
    return np.stack([x0, y0, x1, y1], axis=1)

