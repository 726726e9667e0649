"""`onnxcam.evaluate`: every metric for every method and layer on a set of images, in one call.

Returns plain dicts (JSON-ready): per method and layer the mean Average Drop / Increase, Deletion /
Insertion AUC and, given boxes, the pointing game; per image the figures and curves. The report
module turns the same dict into a self-contained HTML page.

The curves follow the score of each image's explained column (metrics.common.class_probability):
a classifier's softmax probability, a multi-label head's sigmoid, and the raw score S for targets
whose columns are not classes (Segment: the region's summed logits; Embed: the cosine similarity;
Output: the element); "metric_score" in the result says which.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import OnnxCamError
from .files import read_json_object
from .methods import get as get_method
from .metrics import average_drop_increase, cascading_randomization, deletion_insertion, pointing_game, road
from .graph.randomize import parametric_layers
from .metrics.sanity import check_randomization_steps
from .inputs import to_batch
from .preprocess import view_box
from .metrics.common import metric_score
from .metrics.curves import BASELINES
from .progress import Progress
from .targets.base import Target as TargetObject


if TYPE_CHECKING:
    from .explainer import Explainer

BOXES_EXAMPLE = '{"boxes": {"photo.jpg": [[x0, y0, x1, y1]]}} with fractions in [0, 1]'


def read_boxes(path) -> dict[str, list]:
    """Boxes file: {"boxes": {"photo.jpg": [[x0, y0, x1, y1], ...]}} in fractions of the photo."""
    try:
        data = read_json_object(path, "boxes file", BOXES_EXAMPLE)
    except OnnxCamError as exc:
        raise OnnxCamError(f"cannot read boxes: {exc}") from None
    boxes = data.get("boxes")
    if not isinstance(boxes, dict):
        raise OnnxCamError(f"boxes file {path} has no \"boxes\" object; expected {BOXES_EXAMPLE}")
    for name, items in boxes.items():
        if not isinstance(items, list) or not all(_is_box(b) for b in items):
            raise OnnxCamError(f"boxes file {path}: bad boxes {str(items)[:80]} for {name!r}; "
                               f"expected {BOXES_EXAMPLE} and x0 < x1, y0 < y1")
    return boxes


def _is_box(b) -> bool:
    if not isinstance(b, list) or len(b) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in b):
        return False
    return all(0 <= v <= 1 for v in b) and b[2] > b[0] and b[3] > b[1]


def checked_methods(methods: Sequence[str] | str, steps, baseline: str) -> list[str]:
    """The methods as a list ("gradcam,scorecam" as the CLI takes them, or a list), each known, and
    the deletion steps and baseline in range: checked before the first (possibly long) run."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods)
    if not methods:
        raise OnnxCamError("no method to evaluate; name at least one, e.g. --methods gradcam,scorecam")
    for method in methods:
        get_method(method)
    if baseline not in BASELINES or isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) \
            or steps < 1:
        raise OnnxCamError(f"baseline must be one of {', '.join(BASELINES)} and steps a whole number >= 1, "
                           f"got {baseline!r} and {steps!r}")
    return methods


def evaluate(ex: Explainer, images: Sequence[str | Path], methods: Sequence[str] | str = ("gradcam", "scorecam"),
             layers: str | Sequence[str] = "auto", boxes: dict[str, list] | None = None, steps: int = 50,
             baseline: str = "zero", options: dict[str, dict] | None = None, results: dict | None = None,
             road_percentages: Sequence[float] = (10, 30, 50, 70, 90),
             sanity_steps: Sequence[int] | None = None, target=None) -> dict:
    """Figures for each method x layer. `images`: paths; `boxes`: a dict from read_boxes or None;
    `road_percentages`: () skips ROAD; `sanity_steps` (e.g. [1, 4, 16]) adds the cascading
    randomization check per method (each step flagged `stays_similar` when the maps keep a
    Spearman above metrics.sanity.SIMILAR_SPEARMAN). `results`, if given, receives each method's
    Result. With ex.progress, each long step says on stderr that it begins. `target`: the column
    explained (None: each image's top-1 or the target object's class; an int or one per image), or
    an onnxcam.targets object (Segment, Embed, ...), which explains with ex.with_target(it)."""
    if isinstance(target, TargetObject):
        ex, target = ex.with_target(target), None
    methods = checked_methods(methods, steps, baseline)
    if sanity_steps:
        check_randomization_steps(sanity_steps, len(parametric_layers(ex.model.proto)))
    paths = [Path(p) for p in images]
    x, originals = to_batch(paths, ex.preprocess)
    view_boxes = None
    if boxes is not None:
        view_boxes = [[view_box(b, o.shape[:2], ex.preprocess) for b in boxes.get(p.name, [])]
                      for p, o in zip(paths, originals)]
    out = {"model": ex.source, "images": [str(p) for p in paths], "steps": steps,
           "baseline": baseline, "metric_score": metric_score(ex), "road_percentages": [float(p) for p in road_percentages],
           "image_sizes": [list(o.shape[:2]) for o in originals],
           "preprocess": {"size": list(ex.preprocess.size), "resize": ex.preprocess.resize},
           "methods": {}}
    if view_boxes is not None:   # in pixels of the view the model sees, as the maps
        out["boxes"] = [[[round(float(v), 2) for v in b] for b in bs] for bs in view_boxes]
    n_layers = len(ex.model.resolve_layers(layers))
    per_layer_steps = 2 + (2 if road_percentages else 0)
    bar = Progress(len(methods) * (1 + n_layers * per_layer_steps + (1 if sanity_steps else 0)), "evaluate",
                   enabled=getattr(ex, "progress", False))
    for method in methods:
        res, per_layer = evaluate_method(ex, x, method, layers, target, (options or {}).get(method, {}), steps,
                                         baseline, road_percentages, view_boxes, bar)
        if results is not None:
            results[method] = res
        for row in per_layer.values():   # the pointing game per image, by file name (the report's key)
            hits = row["per_image"].pop("pointing_hit", None)
            if hits is not None:
                row["per_image"]["pointing_hit"] = {paths[i].name: h for i, h in enumerate(hits) if h is not None}
        out["methods"][method] = {"targets": res.target.tolist(), "layers": per_layer,
                                  "options": dict((options or {}).get(method, {}))}
        if sanity_steps:
            bar.begin(f"{method}: sanity check, top {', '.join(map(str, sanity_steps))} layers randomized")
            check = cascading_randomization(ex, x, method, layers=list(res.maps), steps=sanity_steps,
                                            base=res, **(options or {}).get(method, {}))
            out["methods"][method]["sanity"] = check["steps"]
            bar.update()
    bar.close()
    return out


def evaluate_method(ex: Explainer, x: np.ndarray, method: str, layers, target, options: dict, steps: int,
                    baseline: str, road_percentages: Sequence[float], view_boxes: list | None,
                    bar: Progress | None = None):
    """One method on a preprocessed batch: its Result and, per layer, the means and the per-image
    figures (lists aligned with the batch: "drop", "increase", "deletion", "insertion", and with
    ROAD "road_morf" / "road_lerf", each image's mean over the percentages; with boxes
    "pointing_hit" / "pointing_energy", None for an image without a box). evaluate() runs it on all
    its images at once; a dataset run (dataset/evaluate_run.py) batch by batch."""
    bar = bar or Progress(0, "evaluate", enabled=False)
    bar.begin(f"{method}: explaining {len(x)} images")
    res = ex.explain(x, method=method, layers=layers, target=target, **options)
    bar.update()
    per_layer = {}
    for layer, maps in res.maps.items():
        bar.begin(f"{method} @ {layer}: Average Drop / Increase")
        ad = average_drop_increase(ex, x, maps, res.target)
        bar.update()
        bar.begin(f"{method} @ {layer}: deletion / insertion ({steps} steps)")
        di = deletion_insertion(ex, x, maps, res.target, steps=steps, baseline=baseline)
        bar.update()
        row = {"average_drop": ad["average_drop"], "increase_in_confidence": ad["increase_in_confidence"],
               "deletion_auc": float(np.mean(di["deletion"])), "insertion_auc": float(np.mean(di["insertion"])),
               "per_image": {"drop": ad["per_image_drop"], "increase": ad["per_image_increase"],
                             "deletion": di["deletion"], "insertion": di["insertion"]},
               "curves": di["curves"]}
        if road_percentages:
            bar.begin(f"{method} @ {layer}: ROAD MoRF")
            morf = road(ex, x, maps, res.target, road_percentages, "morf")
            bar.update()
            bar.begin(f"{method} @ {layer}: ROAD LeRF")
            lerf = road(ex, x, maps, res.target, road_percentages, "lerf")
            bar.update()
            row["road_morf"], row["road_lerf"] = morf["mean"], lerf["mean"]
            row["curves"]["road_morf"], row["curves"]["road_lerf"] = morf["curves"], lerf["curves"]
            row["per_image"]["road_morf"] = [float(np.mean(c)) for c in morf["curves"]]
            row["per_image"]["road_lerf"] = [float(np.mean(c)) for c in lerf["curves"]]
        if view_boxes is not None:
            keep = [i for i, b in enumerate(view_boxes) if b]
            if keep:
                pg = pointing_game(maps[keep], boxes=[view_boxes[i] for i in keep])
                row["pointing_hit_rate"], row["pointing_energy"] = pg["hit_rate"], pg["mean_energy"]
                hits, energy = [None] * len(x), [None] * len(x)
                for i, h, e in zip(keep, pg["hits"], pg["energy"]):
                    hits[i], energy[i] = bool(h), float(e)
                row["per_image"]["pointing_hit"], row["per_image"]["pointing_energy"] = hits, energy
        per_layer[layer] = row
    return res, per_layer
