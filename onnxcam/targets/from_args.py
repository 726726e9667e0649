"""The CLI's task flags (--task, --mask, --reference, --output; --detection, --box, --conf, --iou)
turned into an Explainer with its target, in one place so `explain` (and later commands) only call
`add_task_flags`, `explainer_for_task` and `task_marks`. The class explained stays the job of
--target / --class; for detectors, the detection explained is --detection / --box (task_marks)."""
from __future__ import annotations

import argparse

import numpy as np

from ..annotate import Marks, view_boxes_to_photo
from ..errors import OnnxCamError
from ..preprocess import load_images, read_rgb, view_box
from .classify import Classify
from .detect import Detect, find_detections
from .detections import CONF, IOU_MATCH, IOU_NMS, check_fraction, iou, match, pick
from .embed import Embed
from .multilabel import MultiLabel
from .output import Output
from .segment import Segment

TASKS = ("classify", "multilabel", "segment", "embed", "output", "detect")


def add_task_flags(p: argparse.ArgumentParser, output_flag: str = "--output") -> None:
    """The task flags on a subcommand; `output_flag` names the output-choosing flag where the
    command's --output already means something else (export-explainer's file)."""
    g = p.add_argument_group("task (what score is explained; default: classify)")
    g.add_argument("--task", choices=TASKS, default="classify",
                   help="classify: class logits; multilabel: a sigmoid head's logit; segment: a class's "
                        "logits summed over --mask or its predicted region; embed: cosine similarity of "
                        f"the embedding to --reference's; output: an element of {output_flag} NAME:INDEX; "
                        "detect: a YOLO-style detection's class logit (--detection K or --box)")
    g.add_argument("--mask", metavar="PNG", help="segment: the region (nonzero pixels), at the model's "
                                                 "input or output size")
    g.add_argument("--threshold", type=float, metavar="T",
                   help="segment: the region is where the output exceeds T (a probability for a model "
                        "ending in a Sigmoid; 0.3 for the PP-OCR text detector) instead of the argmax "
                        "region (one-channel sigmoid outputs: default 0.5)")
    g.add_argument("--reference", dest="reference_image", metavar="IMAGE", help="embed: the image whose embedding is compared")
    g.add_argument(output_flag, dest="output_spec", metavar="NAME[:INDEX]",
                   help="the model output to use (output task: and the flat element index)")
    add_detect_flags(g)
    p.set_defaults(output_flag=output_flag)


def _output_spec(text: str | None, flag: str = "--output") -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    name, sep, index = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        return text, None
    if not name or not index.isdigit():
        raise OnnxCamError(f"{flag} must be NAME or NAME:INDEX with INDEX an integer >= 0, got {text!r}")
    return name, int(index)


def explainer_for_task(args, make):
    """The Explainer for args.task; make(target) builds one with the command's other flags."""
    out_flag = getattr(args, "output_flag", "--output")
    name, index = _output_spec(args.output_spec, out_flag)
    task = args.task
    for flag, value, wants in (("--mask", args.mask, "segment"), ("--threshold", args.threshold, "segment"),
                               ("--reference", args.reference_image, "embed")):
        if value is not None and task != wants:
            raise OnnxCamError(f"{flag} is for --task {wants}, not --task {task}")
    check_detect_flags(args)
    if index is not None and task != "output":
        raise OnnxCamError(f"{out_flag} NAME:INDEX is for --task output; with --task {task} give {out_flag} NAME")
    if task == "classify":
        return make(Classify(output=name) if name else None)
    if task == "multilabel":
        return make(MultiLabel(output=name))
    if task == "segment":
        mask = None if args.mask is None else read_rgb(args.mask).any(axis=2)
        return make(Segment(mask=mask, output=name, threshold=args.threshold))
    if task == "output":
        return make(Output(name, index))
    if task == "detect":
        return make(Detect(output=name))
    if args.reference_image is None:
        raise OnnxCamError("--task embed needs --reference IMAGE: the image whose embedding is compared")
    ex = make(Output(name))
    embedding = ex.forward(load_images([args.reference_image], ex.preprocess))[0][0]
    return ex.with_target(Embed(np.asarray(embedding), output=name))


# ----- detect: which detection each image explains, and what the overlays draw
def add_detect_flags(g) -> None:
    g.add_argument("--detection", metavar="K[,K...]",
                   help="detect: explain the K-th detection of each image, best first (default 0); several "
                        "(0,1,2): one overlay each")
    g.add_argument("--box", metavar="X1,Y1,X2,Y2",
                   help="detect: explain the detection whose box overlaps this one (photo pixels) most, "
                        f"by IoU >= {IOU_MATCH:g}; without one, the best-overlapping candidate below the threshold")
    g.add_argument("--conf", type=float, metavar="P", help=f"detect: confidence threshold (default {CONF:g})")
    g.add_argument("--iou", type=float, metavar="T", help=f"detect: NMS IoU threshold (default {IOU_NMS:g})")


def check_detect_flags(args) -> None:
    """Before any model is loaded: detection flags only with --task detect, one way to choose."""
    flags = {"--detection": args.detection, "--box": args.box, "--conf": args.conf, "--iou": args.iou}
    given = [f for f, v in flags.items() if v is not None]
    if given and args.task != "detect":
        raise OnnxCamError(f"{given[0]} is for --task detect, not --task {args.task}")
    if args.detection is not None and args.box is not None:
        raise OnnxCamError("give --detection K or --box X1,Y1,X2,Y2, not both")
    if args.box is not None:
        _box(args.box)
    if args.detection is not None:
        _detections(args.detection)
    for flag, value in (("--conf", args.conf), ("--iou", args.iou)):
        if value is not None:
            check_fraction(value, flag)


def _detections(text: str) -> list[int]:
    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise OnnxCamError(f"--detection must be an index >= 0 or several separated by commas (0,1,2), got {text!r}")
    return [int(p) for p in parts]


def _box(text: str) -> np.ndarray:
    try:
        box = np.array([float(v) for v in text.split(",")], np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise OnnxCamError(f"--box must be X1,Y1,X2,Y2 in photo pixels with X2 > X1 and Y2 > Y1, got {text!r}")
    return box


def task_marks(args, ex, images, target):
    """(images, target, marks): for --task detect, the candidate of each explained detection (chosen
    by --detection or --box) and annotate.Marks drawing it, an image listed once per detection when
    --detection names several; for --task segment --mask, the mask's outline; otherwise (images,
    target, None)."""
    if args.task != "detect":
        if args.task == "segment" and args.mask is not None:
            return images, target, [Marks(mask=read_rgb(args.mask).any(axis=2))] * len(images)
        if args.task == "segment":
            return images, target, _predicted_regions(ex, images, target)
        return images, target, None
    if target is not None:
        raise OnnxCamError("--target names classes; with --task detect choose the detection with "
                           "--detection K or --box X1,Y1,X2,Y2")
    box = None if args.box is None else _box(args.box)
    x, photos = load_images(images, ex.preprocess, return_photos=True)
    found = find_detections(ex, x, CONF if args.conf is None else args.conf,
                            IOU_NMS if args.iou is None else args.iou)
    ks = [0] if args.detection is None else _detections(args.detection)
    listed, chosen, marks = [], [], []
    for image, d, photo in zip(images, found, photos):
        hw = photo.shape[:2]
        if box is None:
            picks = [(pick(d, k), k, f"detection {k}") for k in ks]
        else:
            view = view_box(box / np.array([hw[1], hw[0], hw[1], hw[0]]), hw, ex.preprocess)
            cand = match(d, view)
            overlap = float(iou(view, d.all_boxes[cand])[0])
            k = next((j for j, c in enumerate(d.candidates) if c == cand), None)
            picks = [(cand, k, (f"detection {k}" if k is not None else "below the threshold")
                      + f", IoU {overlap:.2f} with --box")]
        for cand, k, how in picks:
            listed.append(image)
            chosen.append(cand)
            marks.append(_detection_marks(ex, d, cand, k, how, hw))
    return listed, chosen, marks


def _predicted_regions(ex, images, target) -> list[Marks]:
    """Without --mask, each image's explained region: where its explained class (the --class given,
    else the class with the largest region score, as explain picks it) is the argmax of the
    segmenter's output, or where the output exceeds the threshold (one-channel maps: 0.5). Two
    forwards: the region scores, then the dense output."""
    x = load_images(images, ex.preprocess)
    classes = ex.model.check_targets(target, len(x))
    if classes is None:
        classes = ex.forward(x)[0].argmax(axis=1)
    k, (h, w) = ex.target._classes, ex.target._size
    dense = ex.with_target(Output(ex.target.output)).forward(x)[0].reshape(len(x), k, h, w)
    threshold = ex.target.threshold if ex.target.threshold is not None else 0.5 if k == 1 else None
    regions = [dense[i, c] > threshold if threshold is not None else dense[i].argmax(axis=0) == c
               for i, c in enumerate(classes)]   # as Segment defines the region (segment.py)
    return [Marks(mask=r) if r.any() else Marks() for r in regions]


def _detection_marks(ex, d, cand: int, k, how: str, hw) -> Marks:
    c, p = int(d.all_classes[cand]), float(d.all_scores[cand])
    name = ex.class_names[c] if ex.class_names and c < len(ex.class_names) else f"class {c}"
    others = np.array([b for b, j in zip(d.boxes, d.candidates) if j != cand]).reshape(-1, 4)
    photo_box = view_boxes_to_photo(d.all_boxes[cand], hw, ex.preprocess)[0]
    info = {"candidate": cand, "detection": k, "class": c, "name": name, "confidence": p,
            "box": [round(float(v), 2) for v in photo_box], "detections": len(d)}
    return Marks(boxes=d.all_boxes[cand][None], labels=[f"{name} {p:.2f}"], faint=others,
                 caption=f"{name} (class {c}) p={p:.2f}: {how}, candidate {cand}", info=info)
