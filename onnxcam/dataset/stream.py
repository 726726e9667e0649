"""`explain` over a dataset: images streamed through the prefetcher, explained batch by batch,
results appended to the Parquet index (and, if asked, overlays and .npz per image).

Why a separate path from `cli.run_explain`: that one loads every image, keeps every result and
prints a summary per image, which is right for six photos and wrong for 50,000. Here memory holds
one batch being explained plus the prefetched ones and the rows of one index part; what is done
is on disk, so Ctrl-C or a kill loses at most the current part and `--resume` continues.

A consistent state on Ctrl-C: rows enter the index only after the image's files are written, an
index part holds whole images, and on KeyboardInterrupt the images finished so far are written
as a last part before the interrupt goes on (a second Ctrl-C during that write leaves no partial
part: output.write_bytes removes its temporary file).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import OnnxCamError
from ..files import read_json_object
from ..output import check_folder, write_json
from ..progress import Progress
from .choose import DetectionChoice, detection_fields
from .discover import Item
from .index import FOLDER, IndexWriter
from .prefetch import Batch, batches

SAVE_CHOICES = ("overlays", "npz")
TOP_K = 5


def parse_save(text: str) -> tuple[str, ...]:
    """--save: overlays,npz (default), overlays, npz, or none (the index only)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == ["none"]:
        return ()
    bad = [p for p in parts if p not in SAVE_CHOICES]
    if not parts or bad:
        raise OnnxCamError(f"--save takes overlays, npz, both (overlays,npz) or none; got {text!r}")
    return tuple(dict.fromkeys(parts))


def check_output_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A dataset run writes into an empty or new folder, unless it resumes or may overwrite: then
    no existing file is replaced by accident, with one check before the first write."""
    check_folder(out)
    if resume or overwrite or not out.is_dir():
        return
    try:
        busy = next(iter(out.iterdir()), None)
    except OSError as exc:
        raise OnnxCamError(f"cannot list the output folder {out}: {exc.strerror or exc}") from None
    if busy is not None:
        raise OnnxCamError(f"output folder {out} is not empty ({busy.name} ...); choose a new --out, pass "
                           "--resume to continue a run there, or --overwrite")


def request_of(ex, methods, layers, target, options: dict) -> dict:
    """What a run asks for; a resumed run must ask for the same, or its index would mix answers."""
    if target is not None and not isinstance(target, (int, np.integer, DetectionChoice)):
        raise OnnxCamError("--target for a folder, glob or list run takes top1 or one class for every "
                           "image, not one per image")
    chosen = target.as_request() if isinstance(target, DetectionChoice) else None if target is None else int(target)
    return {"model": ex.source, "methods": list(methods), "layers": layers if isinstance(layers, str) else list(layers),
            "target": chosen, "options": {m: options.get(m, {}) for m in methods}}


def start(items: Sequence[Item], request: dict, out: Path, resume: bool, overwrite: bool, part_images: int
          ) -> tuple[IndexWriter, list[Item]]:
    """Checks before a dataset run's first write, its index writer, and the images still to do.
    OUT/run.json holds the request from the start (and the summary at the end), so --resume with
    other methods, layers, target or options is refused instead of mixing two runs in one index."""
    check_output_folder(out, resume, overwrite)
    index = IndexWriter(out / FOLDER, part_images, resume, overwrite)
    record = out / "run.json"
    if resume and index.done and record.is_file():
        before = read_json_object(record, "run record").get("request")
        before = before if isinstance(before, dict) else {}
        # both ways: an explain run's request lacks the "evaluate"/"compare" part an evaluate or
        # compare run adds, and resuming one command's index with the other would mix their rows
        changed = [k for k in dict.fromkeys([*before, *request])
                   if k != "model" and before.get(k) != request.get(k)]
        if changed:
            was = ", ".join(str(before.get(k, "none")) for k in changed)
            raise OnnxCamError(f"{out} holds a run with other {', '.join(changed)} ({was}), or of another command; "
                               "resume with the same command and flags, or choose another --out")
    write_json(record, {"request": request})
    return index, [it for it in items if str(it.path) not in index.done]


def stream_explain(ex, items: Sequence[Item], methods: Sequence[str], layers, target, options: dict,
                   out: Path, save: Sequence[str] = SAVE_CHOICES, resume: bool = False, overwrite: bool = False,
                   write_files: Callable | None = None, workers: int = 2, part_images: int = 256,
                   status_every: int | None = 1000, progress: bool = True, batch_size: int | None = None) -> dict:
    """Explain `items` with each method and write the index (and files); returns a summary dict.

    options: {method: its keyword options}. write_files(results, items, shown, photos, overwrite, save,
    marks) writes the per-image files of one batch and returns {(image, result index): [paths]}
    (cli.write_results with the chosen --save; marks: None or one annotate.Marks per image). target:
    None (each image's top-1), one class, or a DetectionChoice (--task detect: detection K of each image)."""
    stems = {str(it.path): it.stem for it in items}
    keep_photos = bool(save) and write_files is not None or isinstance(target, DetectionChoice)
    return run_stream(ex, items, request_of(ex, methods, layers, target, options), out, resume, overwrite,
                      lambda batch, summary: explain_batch(ex, batch, methods, layers, target, options, stems, save,
                                                           write_files, overwrite or resume, summary),
                      "explain", {"methods": list(methods), "files": 0}, workers, part_images, status_every,
                      progress, batch_size, keep_photos)


def run_stream(ex, items: Sequence[Item], request: dict, out: Path, resume: bool, overwrite: bool,
               rows_of: Callable, what: str = "explain", fields: dict | None = None, workers: int = 2,
               part_images: int = 256, status_every: int | None = 1000, progress: bool = True,
               batch_size: int | None = None, keep_photos: bool = False, quiet: Sequence = ()) -> dict:
    """The loop every dataset run shares (explain, evaluate, compare): the checks and the index
    (start), the images still to do decoded ahead in batches of ex's batch size, rows_of(batch,
    summary) -> one list of rows per image, added to the index image by image, one progress bar,
    Ctrl-C leaving whole parts (keeping_finished), and the summary written as OUT/run.json.
    fields: the summary's own entries besides the common ones; quiet: other Explainers whose
    inner progress is silenced for the run, as ex's."""
    out = Path(out)
    index, todo = start(items, request, out, resume, overwrite, part_images)
    size = batch_size or ex.max_batch
    bar = Progress(len(todo), what, enabled=progress, every=status_every)
    summary = {"request": request, "images": len(items), "skipped_done": len(items) - len(todo), "explained": 0,
               "errors": 0, "index": str(out / FOLDER), "layers": [], "notes": [], **(fields or {})}
    silenced = [ex, *quiet]
    before = [e.progress for e in silenced]
    for e in silenced:   # one bar for the run, not one per Score-CAM image
        e.progress = False
    started, first = time.monotonic(), None   # first: (time, images) after the first batch
    try:
        with keeping_finished(index, bar, len(items)):
            for batch in batches([it.path for it in todo], ex.preprocess, size, workers, keep_photos=keep_photos):
                for image_rows in rows_of(batch, summary):
                    index.add_image(image_rows)
                bar.update(len(batch.items))
                first = first or (time.monotonic(), bar.done)
    finally:
        for e, p in zip(silenced, before):
            e.progress = p
    return finish(summary, index, out, started, first, bar.done)


def finish(summary: dict, index: IndexWriter, out: Path, started: float, first, done: int) -> dict:
    """Timing and part count into the summary, written as OUT/run.json. The first batch also
    builds the explain graphs and sessions (seconds), so the rate is the steady one after it
    (over every image when there was a single batch); first: (time, images) after that batch."""
    end = time.monotonic()
    summary["seconds"] = round(end - started, 3)
    summary["first_batch_seconds"] = round(first[0] - started, 3) if first else None
    t0, n0 = (first if first and done > first[1] else (started, 0))
    summary["images_per_second"] = round((done - n0) / (end - t0), 3) if end > t0 and done else None
    summary["parts"] = len(index.parts())
    write_json(out / "run.json", summary)
    return summary


@contextmanager
def keeping_finished(index: IndexWriter, bar: Progress, total: int):
    """Around a run's loop: at its end the last part is written; on Ctrl-C the images finished so
    far are (the batch being explained is redone by --resume), and the line says how to go on."""
    try:
        yield
        index.flush()
    except KeyboardInterrupt:
        bar.close()
        index.flush()
        print(f"onnxcam: the index holds {len(index.done) + index.written_images} of {total} images; "
              "run the same command with --resume to finish", file=sys.stderr)
        raise
    finally:
        bar.close()


def explain_batch(ex, batch: Batch, methods, layers, target, options, stems, save, write_files, overwrite,
                  summary) -> list[list[dict]]:
    """The index rows of one batch, one list per image in order (files written first)."""
    batch, target, marks = chosen_targets(ex, batch, target)
    good = [batch.items[i] for i in batch.good]
    results = [ex.explain(batch.x, method=m, layers=layers, target=target, **options.get(m, {}))
               for m in methods] if good else []
    files = {}
    if good and save and write_files is not None:
        named = [Item(d.path, stems[str(d.path)]) for d in good]
        files = write_files(results, named, [d.shown for d in good], [d.photo for d in good], overwrite, save,
                            [marks[i] for i in batch.good] if marks else None)
        summary["files"] += sum(len(v) for v in files.values())
    return batch_rows(ex, batch, results, summary, lambda j, r, layer: {
        "files": [str(f) for f in files.get((j, r), [])], **chosen_fields(marks, batch, j)})


def chosen_targets(ex, batch: Batch, target):
    """(batch, target, marks): with a DetectionChoice, each image's chosen candidate (images
    without that detection become error slots) and {position: Marks}; otherwise as given, {}."""
    if isinstance(target, DetectionChoice):
        return target.choose(ex, batch)
    return batch, target, {}


def chosen_fields(marks: dict, batch: Batch, j: int) -> dict:
    """The row fields of the j-th image read when a detection was chosen for it (else none)."""
    return detection_fields(marks[batch.good[j]]) if marks else {}


def batch_rows(ex, batch: Batch, results, summary, extra=None) -> list[list[dict]]:
    """The index rows of one batch from its Results (one per method, over the images that were
    read), one list per image in order: a row per method x layer, or the image's error row.
    extra(j, r, layer) -> fields that replace the row's (files, metrics, curves, ...), for the
    j-th image read and the r-th result."""
    if results and not summary["layers"]:
        summary["layers"] = results[0].layers
        summary["provider"] = results[0].provider
        summary["notes"] = sorted({n for r in results for n in r.notes if " in image " not in n})
    probs = [ex.probabilities(r.logits) if ex.model.class_scores else None for r in results]
    out, position = [], {pos: j for j, pos in enumerate(batch.good)}
    for k, d in enumerate(batch.items):
        if d.error is not None:
            summary["errors"] += 1
            out.append([{"path": str(d.path), "error": d.error}])
            continue
        j = position[k]
        summary["explained"] += 1
        out.append([_row(ex, d.path, res, p, j, layer) | (extra(j, r, layer) if extra else {})
                    for r, (res, p) in enumerate(zip(results, probs)) for layer in res.layers])
    return out


def _row(ex, path: Path, res, probs, j: int, layer: str) -> dict:
    scores = res.logits[j]
    t = int(res.target[j])
    top = np.argsort(-scores, kind="stable")[:TOP_K]
    raw = np.asarray(res.raw[layer][j], np.float32)
    notes = []
    kinks = res.near_kinks.get(layer)
    if res.conservation:
        notes += [f"conserved fraction at {k}: {float(v[j]):.4g}" for k, v in res.conservation.items()]
    return {"path": str(path), "method": res.method, "layer": layer, "target": t,
            "target_name": ex.labels[t] if ex.labels and t < len(ex.labels) else None,
            "score": float(scores[t]),
            "probability": None if probs is None else float(probs[j, t]),
            "top_classes": [int(c) for c in top], "top_scores": [float(scores[c]) for c in top],
            "map_shape": list(raw.shape), "raw_map": raw.reshape(-1),   # every method's raw map is [h, w]
            "files": [],
            "near_kinks": None if kinks is None else int(kinks[j]),
            "metrics": None, "notes": notes, "error": None}
