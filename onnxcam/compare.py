"""`onnxcam.compare`: does a deployed build (FP16, INT8, another exporter) look where the reference looks?

Both models see the same images, preprocessed the reference's way; both explain the *reference's*
class for each image (its top-1 unless a target is given), so the maps answer the same question.
Layers are matched structurally (intake/matching.py). Per image and layer: Pearson, Spearman and
top-k% IoU of the two heatmaps; per image: top-1 agreement and the change of the explained score.
The gate looks at decisions and evidence together: a build fails when its top-1 agreement (the
fraction of images whose top-1 class is unchanged) is below `top1_floor` (default 0.99) OR its mean
map agreement (`gate`: Pearson by default) is below `fail_under` (default 0.9). Either alone misses
real failures: a build that flips half its decisions can keep maps with Pearson 0.97 (the maps
explain the reference's class, whatever the candidate now predicts), and a build can keep every
top-1 while looking somewhere else. The top-1 floor is a fraction of the images: 0.99 means one
change in 100 images is tolerated, so on fewer than 100 images every image must keep its top-1
(with 6 images one change is 5/6 = 0.83). Lower it (e.g. 0.8) to accept a known change.

Other tasks (`task=` an onnxcam.targets object, CLI --task): both builds explain the same target,
and the decision the floor counts is the task's (metrics/decisions.py): a multi-label head's set
of labels on, a segmenter's class per pixel (the floor is then the fraction of pixels unchanged).

The reference must compute finite numbers (Explainer refuses NaN/inf); the candidate may not: a
build that overflows is what this check exists to catch, so its NaN maps score as no agreement and
fail the gate instead of stopping the comparison.
"""
from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import OnnxCamError
from .explainer import Explainer
from .intake.matching import counterpart, match_layers
from .metrics.agreement import map_agreement
from .metrics.decisions import decision_kind, decision_rows, per_pixel
from .preprocess import PreprocessSpec, load_images

GATES = ("pearson", "spearman", "iou")   # the map figure the map floor applies to
MAP_FLOOR = 0.9     # mean map Pearson of static INT8 builds of the bundled model: 0.97-0.99
TOP1_FLOOR = 0.99   # fraction of images keeping their top-1: every one, below 100 images
_NAMES = {"pearson": "map Pearson", "spearman": "map Spearman", "iou": "top-{}% IoU"}


def _explainer(model, providers, preprocess, target=None, **kw) -> Explainer:
    """The model as an Explainer (an Explainer given is used as it is, or with `target` when it
    explains another one: Explainer.with_target)."""
    if isinstance(model, Explainer):
        return model if target is None or target is model.target else model.with_target(target)
    return Explainer(model, providers=providers, preprocess=preprocess, target=target, **kw)


def activation_sums(ref: Explainer, cand: Explainer, x_ref, x_cand, pairs, chunk: int = 4) -> dict:
    """Per matched layer and image the sums of a, b, a², b², ab over the matched activations and
    their count ({reference layer: ([N, 5] float64, values per image)}), streamed over chunks of
    images so memory stays that of a few images whatever the number of layers. A wrong match or a
    broken layer shows in their Pearson before it shows in the maps."""
    sums = {r: [] for r, _ in pairs}
    count = dict.fromkeys(sums, 0)
    for i in range(0, len(x_ref), chunk):
        _, a = ref.forward(x_ref[i:i + chunk], [r for r, _ in pairs])
        _, b = cand.forward(x_cand[i:i + chunk], [c for _, c in pairs])
        for r, c in pairs:
            if a[r].shape != b[c].shape:
                raise OnnxCamError(f"matched layers have different shapes: reference {r} {a[r].shape[1:]}, "
                                   f"candidate {c} {b[c].shape[1:]}; fix the match with --match")
            n = len(a[r])
            u, v = a[r].astype(np.float64).reshape(n, -1), b[c].astype(np.float64).reshape(n, -1)
            with np.errstate(invalid="ignore", over="ignore"):   # a non-finite candidate scores 0 below
                sums[r].append(np.stack([u.sum(1), v.sum(1), (u * u).sum(1), (v * v).sum(1), (u * v).sum(1)], 1))
            count[r] = u.shape[1]
    return {r: (np.concatenate(s), count[r]) for r, s in sums.items()}


def pearson_of_sums(sums: np.ndarray, n: int) -> float:
    """Pearson from the sums of a, b, a², b², ab over n values (1 where both are constant and equal
    in spread, 0 where a figure is not finite or one side is constant)."""
    su, sv, suu, svv, suv = sums
    cov, vu, vv = suv - su * sv / n, suu - su * su / n, svv - sv * sv / n
    ok = np.isfinite([cov, vu, vv]).all() and vu > 0 and vv > 0
    return float(np.clip(cov / np.sqrt(vu * vv), -1, 1)) if ok else (1.0 if vu == vv == 0 else 0.0)


def _activation_agreement(ref: Explainer, cand: Explainer, x_ref, x_cand, pairs, chunk: int = 4) -> dict:
    """Pearson of the matched activations pooled over all images, per reference layer."""
    return {r: pearson_of_sums(s.sum(axis=0), n * len(s))
            for r, (s, n) in activation_sums(ref, cand, x_ref, x_cand, pairs, chunk).items()}


def _in_range(value, lo: float, hi: float) -> bool:
    """value is a real number (not NaN, not a bool, not a string) in [lo, hi]."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and lo <= float(value) <= hi


def _number(value) -> float | None:
    """A JSON-safe figure: None where the model produced NaN or infinity."""
    value = float(value)
    return value if np.isfinite(value) else None


def _explained(ex: Explainer) -> str:
    act = ex.model.final_activation
    return "its output as exported" if act is None else f"the input of its final {act}"


def _same_preprocessing(ref: Explainer, cand: Explainer) -> None:
    """A candidate given as an Explainer must read images the reference's way (layout aside)."""
    for f in fields(PreprocessSpec):
        if f.name != "layout" and getattr(ref.preprocess, f.name) != getattr(cand.preprocess, f.name):
            raise OnnxCamError(f"the candidate preprocesses images differently from the reference "
                               f"({f.name}: {getattr(cand.preprocess, f.name)} vs "
                               f"{getattr(ref.preprocess, f.name)}); pass it as a path, or build it "
                               "with preprocess=reference.preprocess")


def compare(reference: str | Path | Any, candidate: str | Path | Any, images: Sequence[str | Path],
            method: str = "gradcam", layers: str | Sequence[str] = "auto", match: dict[str, str] | None = None,
            target: Any = None, top_percent: float = 20.0, fail_under: float | None = MAP_FLOOR,
            gate: str = "pearson", options: dict | None = None, providers: list[str] | None = None,
            preprocess: Any = None, results: dict | None = None, top1_floor: float | None = TOP1_FLOOR,
            task: Any = None, **explainer_args: Any) -> dict:
    """Compare the explanations of `candidate` with those of `reference` on `images` (paths).

    reference / candidate: paths, ModelProtos or Explainers. layers: reference layers ("auto",
    names, "all"); match: {reference layer: candidate layer} overrides. The gate (module
    docstring) fails when the mean of `gate` ("pearson", "spearman", "iou" of the two maps, mean
    over images and layers) is below `fail_under` (in [-1, 1]) or when the fraction of images
    whose top-1 is unchanged is below `top1_floor` (in [0, 1]); None switches that floor off,
    and with both None there is no verdict. Returns a JSON-ready dict ("passed", "verdict" and
    "gates" with each figure, floor and outcome); `results`, if given, receives both Results
    and the images' views and thumbnail aspects under "reference", "candidate", "views", "aspects".
    task: an onnxcam.targets object (Segment, MultiLabel, Embed, ...) both builds explain when given
    as paths; None: the reference's own (an Explainer's target, else the classifier's logits). The
    top-1 floor then counts the task's decisions (module docstring).
    """
    ref, cand = open_builds(reference, candidate, providers, preprocess, task, gate, top_percent, fail_under,
                            top1_floor, explainer_args)
    with nonfinite_allowed(cand):
        out = _compare(ref, cand, images, method, layers, match, target, top_percent, gate, options, results)
    return gate_result(out, fail_under, top1_floor)


def open_builds(reference, candidate, providers, preprocess, task, gate: str, top_percent, fail_under, top1_floor,
                explainer_args: dict) -> tuple[Explainer, Explainer]:
    """The arguments checked and both builds as Explainers (compare's docstring): the candidate reads
    the images the reference's way (only the layout is its own) and explains its target."""
    if gate == "top1":
        raise OnnxCamError("top-1 agreement has its own floor, checked with the map's: pass "
                           "top1_floor=T (--top1-floor T) and a map gate (pearson, spearman, iou)")
    if gate not in GATES:
        raise OnnxCamError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    if not (_in_range(top_percent, 0, 100) and float(top_percent) > 0):
        raise OnnxCamError(f"top_percent must be in (0, 100], got {top_percent}")
    if fail_under is not None and not _in_range(fail_under, -1, 1):
        raise OnnxCamError(f"fail_under (--fail-under) must be a number in [-1, 1] (Pearson and Spearman "
                           f"lie in [-1, 1], IoU in [0, 1]), got {fail_under!r}")
    if top1_floor is not None and not _in_range(top1_floor, 0, 1):
        raise OnnxCamError(f"top1_floor (--top1-floor) must be a fraction of the images in [0, 1] "
                           f"(0.99: every image below 100 images), got {top1_floor!r}")
    ref = _explainer(reference, providers, preprocess, target=task, **explainer_args)
    same_way = {f.name: getattr(ref.preprocess, f.name) for f in fields(PreprocessSpec) if f.name != "layout"}
    cand = _explainer(candidate, providers, same_way, allow_nonfinite=True, target=ref.target, **explainer_args)
    return ref, cand


@contextmanager
def nonfinite_allowed(cand: Explainer):
    """The candidate may compute NaN/inf while it is compared (module docstring); as given after."""
    given, cand.allow_nonfinite = cand.allow_nonfinite, True
    try:
        yield cand
    finally:
        cand.allow_nonfinite = given


def check_builds(ref: Explainer, cand: Explainer, layers, match) -> tuple[list[str], list, dict]:
    """That the builds are two builds of one model explaining one target; the reference layers,
    (reference, candidate) layer pairs and the structural matches."""
    _same_preprocessing(ref, cand)
    if cand.model.num_classes != ref.model.num_classes:
        raise OnnxCamError(f"the reference has {ref.model.num_classes} classes and the candidate "
                           f"{cand.model.num_classes}: they are not builds of one classifier")
    if type(ref.target) is not type(cand.target):   # a candidate Explainer with a target, the reference none
        raise OnnxCamError(f"the reference explains {ref.target!r} but the candidate {cand.target!r}; give the "
                           "candidate as a path (it then explains the reference's target)")
    if ref.model.final_activation != cand.model.final_activation:
        raise OnnxCamError(f"the reference explains {_explained(ref)} but the candidate {_explained(cand)}; "
                           "pass --score output (score='output') to compare both outputs as exported")
    matches = match_layers(ref.model, cand.model, match)
    ref_layers = [l.name for l in ref.model.resolve_layers(layers)]
    return ref_layers, [(r, counterpart(matches, r)) for r in ref_layers], matches


def compare_batch(ref: Explainer, cand: Explainer, x_ref, x_cand, paths, method: str, ref_layers, pairs, target,
                  top_percent: float, gate: str, options: dict):
    """Both builds explain one batch: (a, b, pairs, per-image rows in batch order). Each row has
    the map figures per layer, the decision's agreement, the score changes and "agreement", the
    mean over layers of the gated figure. Pixel methods (lrp, srmap) map the input, not the
    layers: their pairs are then (input, input)."""
    a = ref.explain(x_ref, method=method, layers=ref_layers, target=target, **options)
    b = cand.explain(x_cand, method=method, layers=[c for _, c in pairs], target=a.target, **options)
    if list(a.maps) != ref_layers:
        pairs = [(k, k) for k in a.maps]
    rows = [_image_row(ref, cand, a, b, i, path, pairs, top_percent) | decided
            for (i, path), decided in zip(enumerate(paths), decision_rows(ref, cand, x_ref, x_cand, a, b))]
    for row in rows:
        row["agreement"] = float(np.mean([row["layers"][r][gate] for r, _ in pairs]))
    return a, b, pairs, rows


def _compare(ref, cand, images, method, layers, match, target, top_percent, gate, options, results) -> dict:
    ref_layers, pairs, matches = check_builds(ref, cand, layers, match)
    paths = [Path(p) for p in images]
    x_ref, views, photos = load_images(paths, ref.preprocess, return_views=True, return_photos=True)
    x_cand = x_ref if cand.preprocess == ref.preprocess else load_images(paths, cand.preprocess)
    a, b, pairs, per_image = compare_batch(ref, cand, x_ref, x_cand, paths, method, ref_layers, pairs, target,
                                           top_percent, gate, options or {})
    if list(a.maps) == ref_layers:
        matching = [matches[r].as_dict() for r in ref_layers]
        acts = _activation_agreement(ref, cand, x_ref, x_cand, pairs)
    else:  # pixel methods (lrp, srmap) map the input, not the layers
        matching = [{"reference": k, "candidate": k, "how": "input"} for k in a.maps]
        acts = {k: None for k in a.maps}
    if results is not None:
        # thumbnails at the photo's aspect where the model saw the whole photo stretched
        aspects = [p.shape[0] / p.shape[1] if ref.preprocess.resize == "stretch" else v.shape[0] / v.shape[1]
                   for p, v in zip(photos, views)]
        results.update(reference=a, candidate=b, views=views, labels=ref.labels, aspects=aspects)

    notes = sorted(set(a.notes + b.notes)) + _finiteness_notes(a, b, pairs, paths)
    summary = _summary(per_image, pairs, acts) | {"decision": decision_kind(ref), "per_pixel": per_pixel(ref)}
    per_image.sort(key=lambda row: row["agreement"])  # worst first
    value = float(np.mean([row["agreement"] for row in per_image]))
    out = {"reference": ref.source, "candidate": cand.source, "method": method,
           "image_order": [str(p) for p in paths],
           "provider": {"reference": a.provider, "candidate": b.provider},
           "top_percent": top_percent, "gate": gate, "agreement": value,
           "matching": matching,
           "all_matches": [m.as_dict() for m in matches.values()],
           "summary": summary, "images": per_image, "notes": notes}
    return out


def gate_result(out: dict, fail_under: float | None, top1_floor: float | None) -> dict:
    """Both floors on the result: "gates" holds each figure, its floor (None: not gated) and its
    outcome; "passed" is their conjunction and "verdict" the line for a CI log."""
    if fail_under is None and top1_floor is None:
        return out
    top1 = out["summary"]["top1_agreement"]
    # whole-image decisions: every image that changed; per-pixel ones: the images below the floor
    cut = (1.0 if top1_floor is None else top1_floor) if out["summary"]["per_pixel"] else 1.0
    changed = [Path(r["image"]).name for r in out["images"] if r["decision_agreement"] < cut]
    out["gates"] = {
        "map": {"figure": out["gate"], "value": out["agreement"], "floor": fail_under,
                "passed": fail_under is None or out["agreement"] >= fail_under},
        "top1": {"figure": "top1_agreement", "value": top1, "floor": top1_floor,
                 "passed": top1_floor is None or top1 >= top1_floor,
                 "images_agreeing": len(out["images"]) - len(changed), "changed": changed}}
    if fail_under is not None:
        out["fail_under"] = fail_under
    if top1_floor is not None:
        out["top1_floor"] = top1_floor
    out["passed"] = all(g["passed"] for g in out["gates"].values())
    out["verdict"] = verdict(out)
    return out


def _finiteness_notes(a, b, pairs, paths) -> list[str]:
    """Say where a model produced NaN/inf: those figures are scored as no agreement or null."""
    notes = []
    for r, c in pairs:
        for who, layer, maps in (("reference", r, a.maps[r]), ("candidate", c, b.maps[c])):
            bad = [paths[i].name for i in range(len(paths)) if not np.isfinite(maps[i]).all()]
            if bad:
                notes.append(f"the {who}'s map at {layer} is not finite for {', '.join(bad)} "
                             "(NaN or infinite values in the model): scored as no agreement")
    if not (np.isfinite(a.logits).all() and np.isfinite(b.logits).all()):
        notes.append("scores contain NaN or infinite values: their deltas are null")
    return notes


def _image_row(ref, cand, a, b, i: int, path: Path, pairs, top_percent: float) -> dict:
    """One image: both top-1s, the change of the explained score, the maps' agreement per layer."""
    t = int(a.target[i])
    probabilities = ref.model.class_scores   # a region sum or a similarity has none
    pa, pb = (ref.probabilities(a.logits[i:i + 1])[0], cand.probabilities(b.logits[i:i + 1])[0]) \
        if probabilities else (None, None)
    row = {"image": str(path), "target": t, "reference_top1": int(a.logits[i].argmax()),
           "candidate_top1": int(b.logits[i].argmax()),
           "score_delta": _number(b.logits[i, t] - a.logits[i, t]),
           "probability_delta": _number(pb[t] - pa[t]) if probabilities else None,
           "max_abs_score_delta": _number(np.abs(b.logits[i] - a.logits[i]).max()),
           "layers": {r: map_agreement(a.maps[r][i], b.maps[c][i], top_percent) for r, c in pairs}}
    row["top1_agrees"] = row["reference_top1"] == row["candidate_top1"]
    return row


def _summary(per_image: list[dict], pairs, acts: dict) -> dict:
    """Means and minima over the images; score deltas only when every one is finite."""
    deltas = [r["max_abs_score_delta"] for r in per_image if r["max_abs_score_delta"] is not None]
    target_deltas = [abs(r["score_delta"]) for r in per_image if r["score_delta"] is not None]
    complete = len(deltas) == len(target_deltas) == len(per_image)
    summary = {"top1_agreement": float(np.mean([r["decision_agreement"] for r in per_image])),
               "max_abs_score_delta": max(deltas) if complete else None,
               "mean_abs_target_score_delta": float(np.mean(target_deltas)) if complete else None,
               "layers": {}}
    for r, c in pairs:
        figures = {k: [img["layers"][r][k] for img in per_image] for k in ("pearson", "spearman", "iou")}
        summary["layers"][r] = {"candidate": c, "activation_pearson": acts[r],
                                **{f"mean_{k}": float(np.mean(v)) for k, v in figures.items()},
                                **{f"min_{k}": float(np.min(v)) for k, v in figures.items()}}
    return summary


def verdict(result: dict, shown: int = 3) -> str:
    """One line for a CI log: the overall outcome, then each gate's figure against its floor with
    its own PASS/FAIL (or "not gated"), the images whose top-1 changed, and the worst map's image."""
    gates = result["gates"]
    m, t = gates["map"], gates["top1"]

    def against(g):
        if g["floor"] is None:
            return "(not gated)"
        return f"{'>=' if g['passed'] else '<'} {g['floor']:.3f} {'PASS' if g['passed'] else 'FAIL'}"

    name = _NAMES[m["figure"]].format(f"{result['top_percent']:g}")
    n = len(result["images"])
    decision = result["summary"].get("decision", "top-1")   # what the floor counts (metrics/decisions.py)
    pixels = result["summary"].get("per_pixel", False)
    counted = f"{t['images_agreeing']}/{n} images" + (" at or above the floor" if pixels else "")
    changed = t["changed"]
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    which = f", {'below the floor' if pixels else 'changed'} on {', '.join(changed[:shown])}{more}" if changed else ""
    worst = result["images"][0]
    return (f"{'PASS' if result['passed'] else 'FAIL'}: mean {name} {m['value']:.3f} {against(m)}; "
            f"{decision} agreement {t['value']:.{4 if pixels else 3}f} ({counted}) {against(t)}{which} "
            f"({result['method']}; worst map {Path(worst['image']).name} at {worst['agreement']:.3f})")
