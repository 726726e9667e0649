"""A detector's detections in numpy: decode the pre-NMS head, non-maximum suppression, IoU matching.

Why here and not in the graph: choosing WHICH detection to explain is done once per image, before
the explaining run; the explained score itself is a graph piece (targets/detect.py: one column per
pre-NMS candidate). Each detection remembers the candidate it came from, so explaining detection k
of image i is explain(target=[candidate]) on the Detect target's graph.

Layouts (targets/detect.Head): "boxes_first" is ultralytics YOLOv8/YOLO11's [N, 4+K, A] (cx, cy, w,
h in input pixels, then K class probabilities); "anchors_first" is YOLOv5's [N, A, 5+K] (cx, cy, w,
h, objectness, K class probabilities; a candidate's confidence in class c is objectness x p_c).
Each candidate is one class, its best (ultralytics' multi_label=False); NMS is per class, as
ultralytics' default (agnostic=False). Boxes are xyxy in the pixels of the view the model saw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OnnxCamError, describe

CONF = 0.25        # ultralytics' default confidence threshold
IOU_NMS = 0.7      # ultralytics' default NMS IoU threshold (predict)
MAX_DET = 300      # ultralytics' default cap on detections per image
IOU_MATCH = 0.5    # a box matches a candidate from this IoU on (FasterRCNNBoxScoreTarget's default)
LAYOUTS = ("boxes_first", "anchors_first")


@dataclass
class Detections:
    """One image's detections (sorted by score, best first) and every pre-NMS candidate.

    boxes [M, 4] xyxy, scores [M], classes [M], candidates [M] (the pre-NMS index each came
    from); all_boxes [A, 4], all_scores [A], all_classes [A]: each candidate's box, best-class
    confidence and that class."""
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    candidates: np.ndarray
    all_boxes: np.ndarray
    all_scores: np.ndarray
    all_classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def decode(head: np.ndarray, layout: str, classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [N, A, 4] xyxy, class confidences [N, A, K]) from a head's values in `layout`;
    classes: K when rows after the classes are something else (boxes_first: mask coefficients,
    keypoints), None: every row after the box."""
    head = np.asarray(head, np.float32)
    if layout not in LAYOUTS:
        raise OnnxCamError(f"layout must be {' or '.join(LAYOUTS)}, got {describe(layout)}")
    if head.ndim != 3:
        raise OnnxCamError(f"a detection head must be [N, 4+K, A] or [N, A, 5+K], got shape {head.shape}")
    if layout == "boxes_first":
        if head.shape[1] < 5:
            raise OnnxCamError(f"a [N, 4+K, A] head needs at least one class row, got shape {head.shape}")
        rows = head.transpose(0, 2, 1)              # [N, A, 4+K]
        xywh, conf = rows[..., :4], rows[..., 4:None if classes is None else 4 + classes]
    else:
        if head.shape[2] < 6:
            raise OnnxCamError(f"a [N, A, 5+K] head needs at least one class column, got shape {head.shape}")
        xywh, conf = head[..., :4], head[..., 4:5] * head[..., 5:]
    return xywh_to_xyxy(xywh), conf


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[..., 2:4] / 2
    return np.concatenate([xywh[..., :2] - half, xywh[..., :2] + half], axis=-1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of boxes [M, 4] (0 where a union is empty)."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices kept, best score first (ties: the lower index first, so it is stable)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou(boxes[best], boxes[order]) <= iou_threshold]
    return np.asarray(keep, np.int64)


def detections(boxes: np.ndarray, conf: np.ndarray, conf_threshold: float = CONF,
               iou_threshold: float = IOU_NMS, max_det: int = MAX_DET) -> Detections:
    """One image's detections from its decoded candidates (boxes [A, 4], conf [A, K])."""
    check_fraction(conf_threshold, "conf")
    check_fraction(iou_threshold, "iou")
    classes, scores = conf.argmax(axis=1), conf.max(axis=1)
    picked = np.flatnonzero(scores > conf_threshold)
    kept = []
    for c in np.unique(classes[picked]):
        mine = picked[classes[picked] == c]
        kept.extend(mine[nms(boxes[mine], scores[mine], iou_threshold)])
    kept = np.asarray(kept, np.int64)
    kept = kept[np.lexsort((kept, -scores[kept]))][:max_det] if kept.size else kept
    return Detections(boxes[kept], scores[kept], classes[kept], kept, boxes, scores, classes)


def check_fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise OnnxCamError(f"{what} must be a number between 0 and 1, got {describe(value)}")
    return float(value)


def pick(d: Detections, k: int) -> int:
    """The candidate of detection k (0 = the best)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise OnnxCamError(f"detection must be an index >= 0 (0 = the best detection), got {describe(k)}")
    if k >= len(d):
        found = f"only {len(d)} (0..{len(d) - 1})" if len(d) else "none"
        raise OnnxCamError(f"there is no detection {k}: the model detects {found} above the confidence "
                           f"threshold; pick a lower --detection or lower --conf")
    return int(d.candidates[k])


def match(d: Detections, box, threshold: float = IOU_MATCH) -> int:
    """The candidate explained for a box (xyxy, view pixels): the detection that overlaps it most
    (IoU >= threshold; ties: the more confident); when no detection does, the pre-NMS candidate
    that overlaps it most (a box the model scored below the confidence threshold: why was it not
    detected?). None overlaps that much: one line naming the best IoU found."""
    box = np.asarray(box, np.float64)
    for pool in (d.candidates, np.arange(len(d.all_scores))):
        if len(pool) == 0:
            continue
        overlap = iou(box, d.all_boxes[pool])
        best = np.lexsort((-d.all_scores[pool], -overlap))[0]
        if overlap[best] >= threshold:
            return int(pool[best])
    closest = float(iou(box, d.all_boxes).max()) if len(d.all_boxes) else 0.0
    raise OnnxCamError(f"no candidate box overlaps the box by IoU >= {threshold:g} (the closest: IoU "
                       f"{closest:.2f}); draw the box around an object the model boxes")
