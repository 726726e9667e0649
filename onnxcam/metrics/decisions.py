"""What a model decides on each image, by task, and how much two builds' decisions agree.

`compare`'s decision gate (--top1-floor) asks whether a deployed build still decides what the
reference decides. What "the decision" is depends on the target the models are explained with:

- classifier (no target, Classify), Output, Embed: the top-1 column of the score S. An image
  agrees (1) or not (0). (Embed has one column, so it always agrees: an embedding has no decision;
  compare's score delta is the change of the cosine similarity.)
- MultiLabel: the set of labels the sigmoid head turns on (probability >= 0.5, i.e. logit > 0);
  an image agrees when the set is the same, label for label.
- Segment: the class of every pixel (the argmax over the dense [N, K, H, W] output, the map the
  user sees); an image's agreement is the fraction of its pixels whose class is unchanged, so
  the gate's figure is the fraction of all pixels unchanged (images have one size) and the floor
  0.99 tolerates one pixel in 100. Why pixels and not the explained region: a build that moves a
  boundary by a pixel changes many region sums a little, and one that swaps two small classes
  changes few pixels but every decision there; the pixel count weighs both by their area, as a
  segmentation's accuracy does. Each row also carries the IoU of the explained class's region
  (reference vs candidate) so a class that shrinks shows even when the rest of the image keeps.

- Detect (targets/detect.py): the detections after NMS (find_detections, ultralytics' default
  thresholds). A reference detection is kept when the candidate has one of the same class with
  IoU >= 0.5 (matched greedily, best score first, each candidate detection used once); an image's
  agreement is matched / max(reference count, candidate count), so it is 1 exactly when both
  builds detect the same objects, and an extra or a lost detection both lower it (no detection in
  either: 1). Rows carry both counts, the matches and their mean IoU.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import OnnxCamError
from ..targets.base import TARGET_SCORE
from ..targets.detections import IOU_MATCH, iou

#: What summary["decision"] says the gate counts, per target class name (default: "top-1").
KINDS = {"MultiLabel": "label set (sigmoid >= 0.5)", "Segment": "per-pixel class",
         "Detect": "detections (same class, IoU >= 0.5)"}


def decision_kind(ex) -> str:
    return KINDS.get(type(ex.target).__name__, "top-1")


def per_pixel(ex) -> bool:
    """True where an image's agreement is a fraction (of its pixels, of its detections), not
    all-or-nothing."""
    return type(ex.target).__name__ in ("Segment", "Detect")


def _top1(ref, cand, x_ref, x_cand, a, b) -> list[dict]:
    return [{"decision_agreement": float(a.logits[i].argmax() == b.logits[i].argmax())} for i in range(len(a.logits))]


def _label_set(ref, cand, x_ref, x_cand, a, b) -> list[dict]:
    """Sigmoid >= 0.5 is logit >= 0 (the score is the pre-sigmoid logit)."""
    on_a, on_b = a.logits >= 0, b.logits >= 0
    return [{"decision_agreement": float(np.array_equal(on_a[i], on_b[i])),
             "reference_labels": np.flatnonzero(on_a[i]).tolist(),
             "candidate_labels": np.flatnonzero(on_b[i]).tolist()} for i in range(len(a.logits))]


def dense_logits_name(proto) -> str:
    """The dense output a Segment target sums: the first input of the Mul that feeds its ReduceSum."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(TARGET_SCORE)
    mul = producers.get(node.input[0]) if node is not None and node.op_type == "ReduceSum" else None
    if mul is None or mul.op_type != "Mul":
        raise OnnxCamError("cannot find the segmentation output behind the Segment target's score; "
                           "compare the builds with --top1-floor 0 (maps only)")
    return mul.input[0]


def class_map(ex, x: np.ndarray) -> np.ndarray:
    """Per-pixel class [N, H, W] of a Segment-targeted Explainer (argmax of its dense logits)."""
    _, acts = ex.forward(x, [dense_logits_name(ex.model.proto)])
    (dense,) = acts.values()
    return dense.argmax(axis=1)


def _segment_pixels(ref, cand, x_ref, x_cand, a, b) -> list[dict]:
    ca, cb = class_map(ref, x_ref), class_map(cand, x_cand)
    if ca.shape != cb.shape:
        raise OnnxCamError(f"the reference segments at {ca.shape[1:]} and the candidate at {cb.shape[1:]}: "
                           "they are not builds of one segmenter")
    rows = []
    for i, t in enumerate(np.asarray(a.target)):
        ra, rb = ca[i] == t, cb[i] == t
        union = np.logical_or(ra, rb).sum()
        rows.append({"decision_agreement": float((ca[i] == cb[i]).mean()),
                     "region_iou": float(np.logical_and(ra, rb).sum() / union) if union else 1.0})
    return rows


def matched_detections(da, db, threshold: float = IOU_MATCH) -> list[tuple[int, int, float]]:
    """(reference index, candidate index, IoU) of detections of the same class with IoU >=
    threshold, greedily in the reference's order (best score first), each candidate used once."""
    free = np.ones(len(db), bool)
    pairs = []
    for i in range(len(da)):
        same = free & (db.classes == da.classes[i])
        if not same.any():
            continue
        overlap = np.where(same, iou(da.boxes[i], db.boxes), -1.0)
        j = int(overlap.argmax())
        if overlap[j] >= threshold:
            free[j] = False
            pairs.append((i, j, float(overlap[j])))
    return pairs


def _detections(ref, cand, x_ref, x_cand, a, b) -> list[dict]:
    from ..targets.detect import find_detections
    rows = []
    for da, db in zip(find_detections(ref, x_ref), find_detections(cand, x_cand)):
        pairs = matched_detections(da, db)
        most = max(len(da), len(db))
        rows.append({"decision_agreement": len(pairs) / most if most else 1.0,
                     "reference_detections": len(da), "candidate_detections": len(db),
                     "matched": len(pairs),
                     "matched_iou": float(np.mean([p[2] for p in pairs])) if pairs else None})
    return rows


DECISIONS: dict[str, Callable] = {"MultiLabel": _label_set, "Segment": _segment_pixels, "Detect": _detections}


def decision_rows(ref, cand, x_ref, x_cand, a, b) -> list[dict]:
    """One dict per image: "decision_agreement" in [0, 1] (module docstring) and its detail.
    ref / cand: the Explainers (same target), x_*: their inputs, a / b: their Results."""
    return DECISIONS.get(type(ref.target).__name__, _top1)(ref, cand, x_ref, x_cand, a, b)
