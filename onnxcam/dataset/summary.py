"""What a dataset's index says about each method x layer: the mean of every per-image figure with
a confidence interval over the images, the mean curves, histograms, and the worst and best images.

Why from the index and not from the run: a resumed run computed part of its images in an earlier
process; the index holds them all, so the report is the same whether the run was cut or not. The
index is read part by part (only the path, method, layer, metrics and curves columns), so memory
holds a few floats per image, never the maps.

The interval is a bootstrap percentile interval (Efron): the images are resampled with
replacement `resamples` times (seeded, so the report is reproducible) and the interval is the
(1 - level) / 2 and (1 + level) / 2 quantiles of the resampled means. Why not a t-interval: the
figures are bounded and skewed (Average Drop piles up at 0 and 100 %, the increase and pointing
figures are 0/1 per image), where a symmetric t-interval can leave [0, 100]; the percentile
interval stays inside the values' range. With one image the interval is that image's value.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .index import part_files, require_pyarrow

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0
PICKED = 3     # worst and best images shown per figure
BINS = 20


def bootstrap_interval(values, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED,
                       chunk_bytes: int = 32 << 20) -> tuple[float, float]:
    """The bootstrap percentile interval of the mean of `values` (finite floats), resampled in
    chunks so that 50,000 images x 1000 resamples stay within `chunk_bytes` of indices."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    step = max(1, chunk_bytes // (8 * v.size))
    means = np.concatenate([v[rng.integers(0, v.size, (min(step, resamples - k), v.size))].mean(axis=1)
                            for k in range(0, resamples, step)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _figure(values: np.ndarray, level: float, resamples: int, seed: int) -> dict:
    lo, hi = bootstrap_interval(values, level, resamples, seed)
    return {"mean": float(values.mean()), "low": lo, "high": hi, "n": int(values.size),
            "min": float(values.min()), "max": float(values.max())}


def summarize(folder: Path, better: dict[str, str | None], picked: int = PICKED, level: float = LEVEL,
              resamples: int = RESAMPLES, seed: int = SEED, bins: int = BINS) -> dict:
    """Per method x layer (in the index's order): "metrics" {name: mean, low, high, n, min, max} for every
    figure the rows hold, "mean_curves" {name: [...]}, and for the figures `better` ranks
    ("lower" or "higher" is better; None: not ranked) "worst" and "best" {name: [{path, value}]}
    (ties in path order). "histograms" {name: {"edges": [...], "counts": {"method @ layer": [...]}}}
    share their edges across method x layer. "images": images with rows, "errors": unreadable ones.
    Non-finite figures are counted in "non_finite" and left out of the means."""
    _, pq = require_pyarrow()
    groups: dict[tuple[str, str], dict] = {}
    paths, errors = set(), 0
    for part in part_files(folder):
        table = pq.read_table(part, columns=["path", "method", "layer", "metrics", "curves", "error"])
        for row in table.to_pylist():
            paths.add(row["path"])
            if row["error"] is not None:
                errors += 1
                continue
            g = groups.setdefault((row["method"], row["layer"]), {"paths": [], "values": {}, "curves": {},
                                                                  "non_finite": 0})
            k = len(g["paths"])
            g["paths"].append(row["path"])
            for name, value in row["metrics"] or []:
                if value is not None and not math.isfinite(value):
                    g["non_finite"] += 1
                    value = None
                g["values"].setdefault(name, {})[k] = value
            for name, curve in row["curves"] or []:
                total = g["curves"].setdefault(name, [np.zeros(len(curve)), 0])
                if len(curve) == len(total[0]) and all(map(math.isfinite, curve)):
                    total[0] += curve
                    total[1] += 1
    out = {"images": len(paths), "errors": errors, "groups": [], "histograms": {},
           "interval": {"kind": "bootstrap percentile", "level": level, "resamples": resamples, "seed": seed}}
    columns = {}
    for (method, layer), g in groups.items():
        entry = {"method": method, "layer": layer, "n": len(g["paths"]), "non_finite": g["non_finite"],
                 "metrics": {}, "mean_curves": {k: (s / n).tolist() for k, (s, n) in g["curves"].items() if n},
                 "worst": {}, "best": {}}
        for name, by_row in g["values"].items():
            rows = np.array([k for k, v in by_row.items() if v is not None], np.int64)
            values = np.array([by_row[k] for k in rows], np.float64)
            if not values.size:
                continue
            entry["metrics"][name] = _figure(values, level, resamples, seed)
            columns.setdefault(name, []).append((f"{method} @ {layer}", values))
            if better.get(name):
                names = [g["paths"][k] for k in rows]
                order = sorted(range(values.size), key=lambda i: (values[i], names[i]))
                worst_first = order[::-1] if better[name] == "lower" else order
                entry["worst"][name] = [{"path": names[i], "value": float(values[i])} for i in worst_first[:picked]]
                entry["best"][name] = [{"path": names[i], "value": float(values[i])}
                                       for i in worst_first[::-1][:picked]]
        out["groups"].append(entry)
    for name, series in columns.items():
        lo = min(float(v.min()) for _, v in series)
        hi = max(float(v.max()) for _, v in series)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        out["histograms"][name] = {"edges": edges.tolist(),
                                   "counts": {label: np.histogram(v, edges)[0].tolist() for label, v in series}}
    return out
