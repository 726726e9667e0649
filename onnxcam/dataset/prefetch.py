"""Decode and preprocess images ahead of the onnxruntime runs, in a thread pool, with a bound.

Why threads: decoding a JPEG, resizing and normalizing it are OpenCV and numpy calls that release
the GIL, so a pool of threads decodes the next images while the main thread waits for onnxruntime
on the current batch; nothing is pickled and the Explainer stays in one process. Why a bound: at
most `ahead` images are decoded but not yet consumed, so memory stays flat however many images
the run covers (a generator over the paths, never a list of decoded images).

An image that cannot be read (corrupt, too large, not an image) does not stop a dataset run: its
slot carries the one-line OnnxCamError message, and the caller records it (the index's `error`
column). Everything else (a bug, KeyboardInterrupt) propagates; closing the generator cancels
the decodes not yet started and waits for the running ones, so no thread outlives the run.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import OnnxCamError
from ..preprocess import PreprocessSpec, fit_view, model_pixels, read_pixels, to_display, to_input


@dataclass
class Decoded:
    """One image, ready for the model: its model input (one image of the float32 batch, made in
    the decoding thread: normalizing 64 images is a quarter second the main thread would wait),
    the uint8 RGB view and photo for figures (when kept), or the reason it could not be read."""
    index: int
    path: Path
    x: np.ndarray | None = None
    shown: np.ndarray | None = None
    photo: np.ndarray | None = None
    error: str | None = None


@dataclass
class Batch:
    """Consecutive images of the run: `items` in order, `x` the float32 batch of those that were
    read (`good` their positions in `items`)."""
    items: list[Decoded]
    x: np.ndarray | None
    good: list[int] = field(default_factory=list)


def decode(index: int, path: Path, spec: PreprocessSpec, keep_photo: bool) -> Decoded:
    """One image through the same steps as preprocess.load_images (read, model pixels, view)."""
    try:
        pixels = model_pixels(read_pixels(path), spec, f"image {path}")
        view = fit_view(pixels, spec)
        photo = to_display(pixels) if keep_photo else None
        return Decoded(index, path, to_input([view], spec)[0], to_display(view) if keep_photo else None, photo)
    except OnnxCamError as exc:
        return Decoded(index, path, error=str(exc))


def decoded(paths: Iterable[Path], spec: PreprocessSpec, workers: int = 2, ahead: int = 128,
            keep_photos: bool = False) -> Iterator[Decoded]:
    """The images in order, at most `ahead` decoded or decoding beyond the one being consumed."""
    if workers < 1 or ahead < 1:
        raise OnnxCamError(f"workers and ahead must be >= 1, got {workers} and {ahead}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnxcam-decode")
    pending: deque = deque()
    source = iter(enumerate(paths))
    try:
        while True:
            while len(pending) < ahead:
                nxt = next(source, None)
                if nxt is None:
                    break
                pending.append(pool.submit(decode, nxt[0], nxt[1], spec, keep_photos))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def batches(paths: Iterable[Path], spec: PreprocessSpec, size: int, workers: int = 2, ahead: int | None = None,
            keep_photos: bool = False) -> Iterator[Batch]:
    """The images in batches of `size` (the last may be smaller), prefetched (`ahead`: default two
    batches) so the next batch is decoded while the caller runs the current one."""
    if size < 1:
        raise OnnxCamError(f"batch size must be >= 1, got {size}")
    items: list[Decoded] = []
    for d in decoded(paths, spec, workers, ahead or 2 * size, keep_photos):
        items.append(d)
        if len(items) == size:
            yield assemble(items)
            items = []
    if items:
        yield assemble(items)


def assemble(items: list[Decoded]) -> Batch:
    """Decoded images as a Batch: the float32 batch of those that were read."""
    good = [i for i, d in enumerate(items) if d.error is None]
    x = np.stack([items[i].x for i in good]) if good else None
    for i in good:   # the batch holds them now; the figures use `shown` and `photo`
        items[i].x = None
    return Batch(items, x, good)
