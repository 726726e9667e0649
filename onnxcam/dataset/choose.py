"""Which detection a dataset run explains in each image (`--task detect --detection K` over a folder).

Why its own step: a detector's explained score is one pre-NMS candidate, and which candidate is
detection K is known only after a forward of the batch (targets/detections.py). On image files
`explain` chooses before the run (targets/from_args.task_marks); a dataset run chooses batch by
batch, and an image without a K-th detection becomes an error row (the index says why) instead of
stopping a run over thousands of images. The choice is the same rule as on files: detections above
--conf after NMS at --iou, ranked by confidence, K = 0 the best.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OnnxCamError
from ..targets.detect import find_detections
from ..targets.detections import CONF, IOU_NMS, pick
from ..targets.from_args import _detection_marks
from .prefetch import Batch


@dataclass(frozen=True)
class DetectionChoice:
    """Explain detection `k` of every image; conf / iou: the thresholds that define the detections."""
    k: int = 0
    conf: float = CONF
    iou: float = IOU_NMS

    def as_request(self) -> dict:
        return {"detection": self.k, "conf": self.conf, "iou": self.iou}

    def choose(self, ex, batch: Batch) -> tuple[Batch, list[int], dict]:
        """(the batch without the images that have no detection k, now error slots; the candidate
        explained per image left; {position in the batch: annotate.Marks of its detection}, whose
        `info` names the class, confidence and box in photo pixels). Needs the batch's photos."""
        if not batch.good:
            return batch, [], {}
        found = find_detections(ex, batch.x, self.conf, self.iou)
        keep, chosen, marks = [], [], {}
        for j, (pos, d) in enumerate(zip(batch.good, found)):
            item = batch.items[pos]
            try:
                cand = pick(d, self.k)
            except OnnxCamError as exc:
                item.error = str(exc)
                continue
            keep.append(j)
            chosen.append(cand)
            marks[pos] = _detection_marks(ex, d, cand, self.k, f"detection {self.k}", item.photo.shape[:2])
        x = batch.x[np.asarray(keep, np.int64)] if keep else None
        return Batch(batch.items, x, [batch.good[j] for j in keep]), chosen, marks


def detection_fields(marks) -> dict:
    """The index fields a chosen detection sets: the class name (the row's target is the candidate)
    and a note with its class, confidence and box."""
    info = marks.info
    return {"target_name": info["name"],
            "notes": [f"detection {info['detection']}: {info['name']} (class {info['class']}) "
                      f"p={info['confidence']:.3f}, box {info['box']} in photo pixels"]}
