"""The same dataset run on Ray Data (`onnxcam explain DIR --engine ray [--address ADDR]`): the paths
as a Ray Dataset, `map_batches` with an actor pool holding one Explainer per worker (CPU, or one
GPU each), and the rows gathered by the driver into the same Parquet index as a single-machine run.

Why this shape: Ray Data is what users of onnxruntime batch inference already run on a cluster;
an actor keeps its Explainer (model, explain graphs, onnxruntime sessions: seconds to build) for
the whole run, as the single-machine run keeps its one. Each actor reads and decodes its batch's
images itself (prefetch.decode: the same reader, caps and checks), so workers need the paths on a
shared file system. The driver writes the index with the same IndexWriter (atomic parts, whole
images per part, --resume), in input order (preserve_order), so the index equals the single-machine
one row for row. A worker that dies mid-batch is restarted by Ray and its batch retried (Ray Data's
actor pools default to max_restarts = max_task_retries = -1); a batch's rows reach the driver
once, when it completes.

Ray is an optional extra (`pip install "onnxcam[ray]"`), imported here only, never by the core.
Rows travel from the actors as one pickled list per image (a binary column), so Ray's type
inference never sees the ragged map lists.
"""
from __future__ import annotations

import logging
import math
import pickle
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import OnnxCamError
from ..progress import Progress
from .discover import Item
from .prefetch import assemble, decode
from .stream import explain_batch, finish, keeping_finished, request_of, start


def require_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise OnnxCamError("--engine ray needs Ray Data: pip install \"onnxcam[ray]\" "
                           "(or pip install \"ray[data]\")") from None
    return ray


def explainer_args(ex, gpus: float) -> dict:
    """What rebuilds `ex` in a worker: the model as given, its resolved preprocessing, labels and
    target, engine limits. A CPU worker runs one onnxruntime thread (it holds one CPU) on the
    driver's providers; a GPU worker picks its own (CUDA when usable: the driver may have none)."""
    if not isinstance(ex.given_model, (str, Path)):
        raise OnnxCamError("--engine ray needs the model as a file path (each worker loads it)")
    threads, providers = (None, None) if gpus else (1, ex.providers)
    return {"model": str(Path(ex.given_model).resolve()), "providers": providers, "preprocess": ex.preprocess,
            "score": ex.score, "memory_budget_mb": ex.memory_budget_mb, "max_batch": ex.max_batch,
            "labels": ex.labels, "target": ex.target, "threads": threads}


class ExplainActor:
    """One Explainer per Ray worker; called with a batch of paths, returns one pickled row list per image."""

    def __init__(self, args: dict, methods, layers, target, options):
        from ..explainer import Explainer

        args = dict(args)
        self.ex = Explainer(args.pop("model"), **args)
        self.methods, self.layers, self.target, self.options = methods, layers, target, options

    def __call__(self, batch: dict) -> dict:
        paths = [Path(str(p)) for p in batch["path"]]
        decoded = [decode(i, p, self.ex.preprocess, False) for i, p in enumerate(paths)]
        rows = explain_batch(self.ex, assemble(decoded), self.methods, self.layers,
                             self.target, self.options, {}, (), None, False,
                             {"explained": 0, "errors": 0, "layers": [], "files": 0})
        return {"path": np.array([str(p) for p in paths], dtype=object),
                "rows": np.array([pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in rows], dtype=object)}


def ray_explain(ex, items: Sequence[Item], methods: Sequence[str], layers, target, options: dict, out: Path,
                resume: bool = False, overwrite: bool = False, address: str | None = None, workers: int = 2,
                gpus_per_worker: float = 0, batch_size: int | None = None, part_images: int = 256,
                status_every: int | None = 1000, progress: bool = True) -> dict:
    """stream_explain's run on Ray Data (index only: per-image files are not written by workers).

    address: an existing cluster ("auto", "ray://host:10001"); None starts a local one with
    `workers` CPUs. workers: actors in the pool, each with one CPU (or `gpus_per_worker` GPUs)."""
    ray = require_ray()
    out = Path(out)
    request = request_of(ex, methods, layers, target, options)
    index, todo = start(items, request, out, resume, overwrite, part_images)
    size = batch_size or ex.max_batch
    summary = {"request": request, "images": len(items), "skipped_done": len(items) - len(todo), "explained": 0, "errors": 0,
               "index": str(index.folder), "methods": list(methods), "layers": [],
               "notes": list(ex.model.notes), "files": 0, "engine": "ray", "workers": workers}
    started, first = time.monotonic(), None
    bar = Progress(len(todo), "explain (ray)", enabled=progress, every=status_every)
    with keeping_finished(index, bar, len(items)):
        if todo:
            logging.getLogger("ray.data").setLevel(logging.WARNING)   # onnxcam's bar and summary say it
            if not ray.is_initialized():
                ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True   # the index in input order, as a local run's
            ctx.enable_progress_bars = False              # onnxcam's bar instead
            ds = ray.data.from_items([{"path": str(it.path)} for it in todo],
                                     override_num_blocks=max(1, math.ceil(len(todo) / size)))
            ds = ds.map_batches(ExplainActor, fn_constructor_args=(explainer_args(ex, gpus_per_worker),
                                                                    list(methods), layers, target, options),
                                batch_size=size, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=workers),
                                num_cpus=0 if gpus_per_worker else 1, num_gpus=gpus_per_worker or None)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for blob in batch["rows"]:
                    rows = pickle.loads(blob)
                    summary["errors" if rows[0].get("error") else "explained"] += 1
                    for r in rows:
                        if r.get("layer") and r["layer"] not in summary["layers"]:
                            summary["layers"].append(r["layer"])
                    index.add_image(rows)
                bar.update(len(batch["rows"]))
                first = first or (time.monotonic(), bar.done)
    return finish(summary, index, out, started, first, bar.done)
