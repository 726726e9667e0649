"""Datasets at scale: explain folders, globs and list files of images with a bounded prefetching
decoder, batched onnxruntime runs, a progress bar, and a resumable Parquet index of the results.

- discover: names (files, folders, globs, list files) -> the ordered, deduplicated image files;
- prefetch: a thread pool decoding and preprocessing ahead of the runs, with a bound on memory;
- index: the Parquet parts (pyarrow, the optional `data` extra, imported only when asked for);
- stream: the run that ties them together (`onnxcam explain DIR --out OUT`);
- evaluate_run, compare_run: `evaluate` and `compare` through the same run, the images' figures in the index;
- summary: means with bootstrap intervals, worst and best images, histograms, from the index;
- picked: the maps of the images a report shows, read back from the index;
- choose: which detection a `--task detect` run explains in each image;
- ray_engine: the same run on Ray Data (`--engine ray`, the optional `ray` extra).

Not `onnxcam.data`: that package holds the bundled model and photos.
"""
from .discover import IMAGE_SUFFIXES, Item, expand_inputs, is_dataset
from .index import read_index
from .stream import stream_explain

__all__ = ["IMAGE_SUFFIXES", "Item", "expand_inputs", "is_dataset", "read_index", "stream_explain"]
