"""`compare` over a dataset (`onnxcam compare REF CAND DIR --out OUT`): the images streamed through the
same pipeline as `explain` (stream.run_stream), both builds explaining each batch
(compare.compare_batch), a row per image x reference layer in the index, then the gate, the
summary and the report made from the whole index.

A compare row: `score`, `target`, `top_classes` are the reference's; `raw_map` is the candidate's
map and `reference_map` the reference's (both raw, at the layer's resolution); `metrics` holds the
image's figures: pearson, spearman, iou (of the two normalized maps), max_abs_difference,
agreement (the gated figure's mean over the image's layers), decision_agreement, top1_agrees,
reference_top1, candidate_top1, score_delta, probability_delta, max_abs_score_delta and, for
layer methods, activation_pearson (of the matched activations, on this image). A figure the
candidate made non-finite is left out of `metrics` (null), and the row's notes say so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import OnnxCamError
from ..compare import activation_sums, check_builds, compare_batch, gate_result, pearson_of_sums
from ..metrics.decisions import decision_kind, per_pixel
from .discover import Item
from .index import part_files, require_pyarrow
from .stream import batch_rows, request_of, run_stream
from .summary import summarize

#: which way each per-image figure is better (None: not ranked); "agreement" ranks where evidence moved
FIGURES = {"pearson": "higher", "spearman": "higher", "iou": "higher", "agreement": "higher",
           "max_abs_difference": "lower", "activation_pearson": None, "decision_agreement": None,
           "top1_agrees": None, "reference_top1": None, "candidate_top1": None, "score_delta": None,
           "probability_delta": None, "max_abs_score_delta": "lower"}
SHOWN = 6      # images shown per layer, least agreement first
LISTED = 50    # images listed in comparison.json, least agreement first


def _relayout(x: np.ndarray, src: str, dst: str) -> np.ndarray:
    """The reference's batch in the candidate's layout (they differ at most in the layout)."""
    if src == dst:
        return x
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if dst == "NHWC" else x.transpose(0, 3, 1, 2))


def stream_compare(ref, cand, items: Sequence[Item], method: str, layers, match, target, top_percent: float,
                   gate: str, options: dict, out: Path, resume: bool = False, overwrite: bool = False,
                   workers: int = 2, part_images: int = 256, status_every: int | None = 1000,
                   progress: bool = True, batch_size: int | None = None) -> dict:
    """Compare the builds on `items` into OUT/index; returns the run's summary (run.json)."""
    ref_layers, pairs, _ = check_builds(ref, cand, layers, match)
    request = request_of(ref, [method], layers, target, {method: options}) | {
        "compare": {"candidate": str(cand.source), "match": match or {}, "top_percent": top_percent, "gate": gate}}

    def rows_of(batch, summary):
        good = [batch.items[i] for i in batch.good]
        if not good:
            return batch_rows(ref, batch, [], summary)
        x_cand = _relayout(batch.x, ref.preprocess.layout, cand.preprocess.layout)
        a, b, used, rows = compare_batch(ref, cand, batch.x, x_cand, [d.path for d in good], method, ref_layers,
                                         pairs, target, top_percent, gate, options)
        acts = activation_sums(ref, cand, batch.x, x_cand, used) if list(a.maps) == ref_layers else {}
        counterpart = dict(used)

        def figures(j, _, layer):
            row, c = rows[j], counterpart[layer]
            values = {**row["layers"][layer], "agreement": row["agreement"],
                      "decision_agreement": row["decision_agreement"], "top1_agrees": row["top1_agrees"],
                      "reference_top1": row["reference_top1"], "candidate_top1": row["candidate_top1"],
                      "score_delta": row["score_delta"], "probability_delta": row["probability_delta"],
                      "max_abs_score_delta": row["max_abs_score_delta"]}
            if layer in acts:
                values["activation_pearson"] = pearson_of_sums(acts[layer][0][j], acts[layer][1])
            finite = {k: float(v) for k, v in values.items() if v is not None and np.isfinite(float(v))}
            cand_map = np.asarray(b.raw[c][j], np.float32)
            notes = [f"candidate layer {c}"] + ([] if np.isfinite(cand_map).all() else
                                                ["the candidate's map is not finite: scored as no agreement"])
            return {"metrics": finite, "raw_map": cand_map.reshape(-1),
                    "reference_map": np.asarray(a.raw[layer][j], np.float32).reshape(-1), "notes": notes}
        return batch_rows(ref, batch, [a], summary, figures)

    return run_stream(ref, items, request, out, resume, overwrite, rows_of, "compare",
                      {"methods": [method], "candidate": str(cand.source)}, workers, part_images, status_every,
                      progress, batch_size, quiet=[cand])


def _per_image(folder: Path) -> list[dict]:
    """{"image", "agreement", "decision_agreement"} per image the index holds (its first row: both
    are the image's, the same on every layer's row), least agreement first."""
    _, pq = require_pyarrow()
    seen = {}
    for part in part_files(folder):
        for row in pq.read_table(part, columns=["path", "metrics", "error"]).to_pylist():
            if row["error"] is None and row["path"] not in seen:
                m = dict(row["metrics"] or [])
                seen[row["path"]] = {"image": row["path"], "agreement": m.get("agreement", 0.0),
                                     "decision_agreement": m.get("decision_agreement", 0.0)}
    return sorted(seen.values(), key=lambda r: (r["agreement"], r["image"]))


def dataset_comparison(ref, cand, out: Path, run: dict, method: str, fail_under, top1_floor) -> dict:
    """comparison.json of a dataset run: the gate (compare.gate_result) on every image of the index,
    the summary per layer with intervals, histograms, and the images of least agreement."""
    folder = Path(out) / "index"
    figures = summarize(folder, FIGURES, picked=SHOWN)
    images = _per_image(folder)
    if not images:
        raise OnnxCamError(f"none of the {run['images']} images could be compared; the error column of "
                           f"{run['index']} says why")
    request = run["request"]["compare"]
    ref_layers, _, matches = check_builds(ref, cand, run["request"]["layers"], request["match"] or None)
    shown = [g["layer"] for g in figures["groups"]]
    matching = [matches[r].as_dict() for r in ref_layers] if set(shown) <= set(ref_layers) else \
        [{"reference": k, "candidate": k, "how": "input"} for k in shown]   # pixel methods map the input
    layers = {}
    for g in figures["groups"]:
        m = g["metrics"]
        get = (lambda k, f: m[k][f] if k in m else None)
        layers[g["layer"]] = {"activation_pearson": get("activation_pearson", "mean"),
                              **{f"mean_{k}": get(k, "mean") for k in ("pearson", "spearman", "iou")},
                              **{f"min_{k}": get(k, "min") for k in ("pearson", "spearman", "iou")}}
    decisions = np.array([r["decision_agreement"] for r in images], np.float64)
    result = {"reference": ref.source, "candidate": cand.source, "method": method, "dataset": True,
              "index": run["index"], "top_percent": request["top_percent"], "gate": request["gate"],
              "agreement": float(np.mean([r["agreement"] for r in images])) if images else float("nan"),
              "matching": matching,
              "summary": {"top1_agreement": float(decisions.mean()) if images else float("nan"),
                          "decision": decision_kind(ref), "per_pixel": per_pixel(ref), "layers": layers},
              "images": images, "figures": figures, "notes": run["notes"]}
    result = gate_result(result, fail_under, top1_floor)
    result["images_total"], result["images"] = len(images), images[:LISTED]
    return result
