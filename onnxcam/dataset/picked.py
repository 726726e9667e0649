"""The maps of a few images picked from a dataset's index (the worst and best of a figure, the ones
whose evidence moved most), with the views they are drawn on, for the report.

Why from the index: the report shows the maps the run computed, not a new run's. Each raw map is
normalized as the Explainer normalizes it (postprocess.normalize with the method's order) and
drawn on the image's view, decoded again with the run's preprocessing (prefetch.decode). Only the
rows of the picked paths are read (a filter on the path column), so memory holds those maps only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..methods import get
from ..postprocess import normalize
from .index import part_files, require_pyarrow
from .prefetch import decode


def picked_maps(ex, folder: Path, wanted: set[tuple[str, str, str]]) -> tuple[dict, dict, dict, dict]:
    """(maps, reference_maps, views, classes) for the (path, method, layer) triples in `wanted`: maps and
    reference_maps {(path, method, layer): [H, W] in [0, 1] at the model's input size} (reference
    ones only for compare's rows), views {path: uint8 RGB the model saw}; a path whose image cannot
    be read again is left out; classes {(path, method, layer): the explained class's name or index}."""
    pa, pq = require_pyarrow()
    import pyarrow.compute as pc
    paths = sorted({p for p, _, _ in wanted})
    size = tuple(ex.model.image_shape[1:])
    maps, references, classes = {}, {}, {}
    for part in part_files(folder):
        table = pq.read_table(part, columns=["path", "method", "layer", "target", "target_name", "map_shape",
                                             "raw_map", "reference_map"])
        table = table.filter(pc.is_in(table.column("path"), value_set=pa.array(paths, pa.string())))
        for row in table.to_pylist():
            key = (row["path"], row["method"], row["layer"])
            if key not in wanted or row["raw_map"] is None:
                continue
            order = get(row["method"]).order
            classes[key] = row["target_name"] or f"class {row['target']}"
            for store, column in ((maps, "raw_map"), (references, "reference_map")):
                if row[column] is not None:
                    raw = np.asarray(row[column], np.float32).reshape(row["map_shape"])
                    store[key] = normalize(raw[None], size, order)[0]
    views = {}
    for path in paths:
        d = decode(0, Path(path), ex.preprocess, keep_photo=True)
        if d.error is None:
            views[path] = d.shown
    return maps, references, views, classes
