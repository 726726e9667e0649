"""`evaluate` over a dataset (`onnxcam evaluate MODEL DIR --out OUT`): the images streamed through the
same pipeline as `explain` (stream.run_stream: bounded prefetch, batches, one progress bar, atomic
index parts, --resume, Ctrl-C), each batch evaluated by evaluate.evaluate_method, a row per image x
method x layer whose `metrics` hold the image's figures and `curves` its deletion / insertion / ROAD
curves; then the summary (summary.summarize: means with bootstrap intervals, worst and best
images) and the report are made from the whole index.

Why per image in the index: a dataset report ranks images (which ones a method explains worst), and
a resumed run must not recompute the images an earlier process did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..evaluate import evaluate_method
from ..metrics.common import metric_score
from ..preprocess import view_box
from .discover import Item
from .choose import DetectionChoice
from .stream import batch_rows, chosen_fields, chosen_targets, request_of, run_stream
from .summary import summarize

#: per-image figure in the index -> evaluate_method's per-image list, and which way is better (None:
#: not ranked, a 0/100 or 0/1 figure per image has no worst image)
FIGURES = {"average_drop": ("drop", "lower"), "increase_in_confidence": ("increase", None),
           "deletion_auc": ("deletion", "lower"), "insertion_auc": ("insertion", "higher"),
           "road_morf": ("road_morf", "lower"), "road_lerf": ("road_lerf", "higher"),
           "pointing_hit": ("pointing_hit", None), "pointing_energy": ("pointing_energy", "higher")}
CURVES = ("deletion", "insertion", "road_morf", "road_lerf")


def stream_evaluate(ex, items: Sequence[Item], methods: Sequence[str], layers, target, options: dict, out: Path,
                    steps: int = 50, baseline: str = "zero", road_percentages: Sequence[float] = (10, 30, 50, 70, 90),
                    boxes: dict | None = None, resume: bool = False, overwrite: bool = False, workers: int = 2,
                    part_images: int = 256, status_every: int | None = 1000, progress: bool = True,
                    batch_size: int | None = None) -> dict:
    """Evaluate `items` with each method into OUT/index; returns the run's summary (run.json).
    boxes: read_boxes' dict (by file name) or None; options: {method: its keyword options};
    target: None, one class, or a DetectionChoice (--task detect)."""
    request = request_of(ex, methods, layers, target, options) | {
        "evaluate": {"steps": steps, "baseline": baseline, "road_percentages": [float(p) for p in road_percentages],
                     "boxes": sorted(boxes) if boxes is not None else None}}

    def rows_of(batch, summary):
        batch, chosen, marks = chosen_targets(ex, batch, target)
        good = [batch.items[i] for i in batch.good]
        view_boxes = None
        if boxes is not None and good:
            view_boxes = [[view_box(b, d.photo.shape[:2], ex.preprocess) for b in boxes.get(d.path.name, [])]
                          for d in good]
        done = [evaluate_method(ex, batch.x, m, layers, chosen, options.get(m, {}), steps, baseline,
                                road_percentages, view_boxes) for m in methods] if good else []
        for d in good:   # the photo was kept for its size only
            d.photo = None

        def figures(j, r, layer):
            per_image = done[r][1][layer]["per_image"]
            values = {name: per_image[key][j] for name, (key, _) in FIGURES.items() if key in per_image}
            curves = done[r][1][layer]["curves"]
            return {"metrics": {k: float(v) for k, v in values.items() if v is not None},
                    "curves": {k: [float(c) for c in curves[k][j]] for k in CURVES if k in curves},
                    **chosen_fields(marks, batch, j)}
        return batch_rows(ex, batch, [res for res, _ in done], summary, figures)

    return run_stream(ex, items, request, out, resume, overwrite, rows_of, "evaluate",
                      {"methods": list(methods)}, workers, part_images, status_every, progress, batch_size,
                      keep_photos=boxes is not None or isinstance(target, DetectionChoice))


def dataset_evaluation(ex, out: Path, run: dict) -> dict:
    """evaluation.json of a dataset run: the run's settings and summary.summarize of its index."""
    settings = run["request"]["evaluate"]
    return {"model": ex.source, "dataset": True, "index": run["index"], "metric_score": metric_score(ex),
            **{k: settings[k] for k in ("steps", "baseline", "road_percentages")}, "boxes": settings["boxes"] is not None,
            "preprocess": {"size": list(ex.preprocess.size), "resize": ex.preprocess.resize},
            **summarize(Path(out) / "index", {name: b for name, (_, b) in FIGURES.items()})}
