"""The results index of a dataset run: Parquet parts in OUT/index/, one row per image x method x
layer (or one row per image that could not be read), written atomically part by part.

Why parts: a run over 50,000 images is killed sometimes (Ctrl-C, an OOM killer, a pre-empted
machine). Each part (`part-00000.parquet`, ...) holds whole images only and is written to a
temporary file and renamed (output.write_bytes), so a killed run loses at most the images of the
part being filled; `--resume` reads the `path` column of the parts there and skips those images.
Any Parquet reader takes the folder as one table (`pyarrow.dataset.dataset(OUT/index)`,
`pandas.read_parquet(OUT/index)`, DuckDB's `read_parquet('OUT/index/*.parquet')`).

pyarrow is an optional extra (`pip install "onnxcam[data]"`): it is imported here, when an index
is asked for, never by the core.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

from ..errors import OnnxCamError
from ..output import write_bytes

PART = re.compile(r"^part-(\d{5,})\.parquet$")
FOLDER = "index"


def require_pyarrow():
    """pyarrow and pyarrow.parquet, or one line saying how to install them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise OnnxCamError("the Parquet index needs pyarrow: pip install \"onnxcam[data]\" "
                           "(or pip install pyarrow)") from None
    return pyarrow, pyarrow.parquet


def schema():
    """The columns of every part (see README, "Datasets"); a list column holds the raw map."""
    pa, _ = require_pyarrow()
    return pa.schema([
        ("path", pa.string()),            # the image, as the run named it (the resume key)
        ("method", pa.string()),
        ("layer", pa.string()),
        ("target", pa.int64()),            # the explained class (or score column)
        ("target_name", pa.string()),
        ("score", pa.float64()),           # the explained score (pre-softmax logit by default)
        ("probability", pa.float64()),     # null where the scores are not class scores
        ("top_classes", pa.list_(pa.int64())),
        ("top_scores", pa.list_(pa.float64())),
        ("map_shape", pa.list_(pa.int32())),   # [h, w] of raw_map
        ("raw_map", pa.list_(pa.float32())),   # the method's raw map, row-major, unnormalized
        ("files", pa.list_(pa.string())),      # overlays / npz written for this image, method and layer
        ("near_kinks", pa.int64()),            # gradient methods: gate units within rounding of a kink
        ("metrics", pa.map_(pa.string(), pa.float64())),   # evaluate's / compare's per-image figures
        ("curves", pa.map_(pa.string(), pa.list_(pa.float64()))),   # evaluate: deletion, insertion, ROAD
        ("reference_map", pa.list_(pa.float32())),   # compare: the reference's raw map (raw_map: the candidate's)
        ("notes", pa.list_(pa.string())),
        ("error", pa.string()),            # why the image could not be explained; null otherwise
    ])


class IndexWriter:
    """Collects rows and writes them as the next part every `part_images` images (and on close)."""

    def __init__(self, folder: Path, part_images: int = 256, resume: bool = False, overwrite: bool = False):
        if part_images < 1:
            raise OnnxCamError(f"part size must be >= 1 image, got {part_images}")
        self.pa, self.pq = require_pyarrow()
        self.schema = schema()
        self.folder = Path(folder)
        self.part_images = part_images
        existing = self.parts()
        if existing and not (resume or overwrite):
            raise OnnxCamError(f"{self.folder} already holds an index ({len(existing)} parts); pass --resume to "
                               "continue that run, --overwrite to start again, or choose another --out")
        if existing and overwrite and not resume:
            for p in existing:
                os.unlink(p)
            existing = []
        self._clear_temporaries()
        self.done = done_paths(self.folder) if resume else set()
        self.next_part = max((int(PART.match(p.name).group(1)) for p in existing), default=-1) + 1
        self.rows: list[dict] = []
        self.images_in_part = 0
        self.written_images = 0

    def parts(self) -> list[Path]:
        return part_files(self.folder)

    def _clear_temporaries(self) -> None:
        """Remove what a killed run left of a part being written (output.py's temporary names)."""
        if self.folder.is_dir():
            for p in self.folder.glob(".onnxcam-*.tmp"):
                p.unlink(missing_ok=True)

    def add_image(self, rows: list[dict]) -> None:
        """The rows of one image (all methods x layers), kept together in one part."""
        self.rows += rows
        self.images_in_part += 1
        if self.images_in_part >= self.part_images:
            self.flush()

    def flush(self) -> None:
        if not self.images_in_part:
            return
        table = self.pa.Table.from_pylist(self.rows, schema=self.schema)
        buf = io.BytesIO()
        self.pq.write_table(table, buf, compression="zstd")
        write_bytes(self.folder / f"part-{self.next_part:05d}.parquet", buf.getvalue())
        self.next_part += 1
        self.written_images += self.images_in_part
        self.rows, self.images_in_part = [], 0


def part_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PART.match(p.name))


def done_paths(folder: Path) -> set[str]:
    """The images an index folder already holds (its parts' `path` column)."""
    _, pq = require_pyarrow()
    done: set[str] = set()
    for part in part_files(folder):
        try:
            done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
        except Exception as exc:   # noqa: BLE001 (pyarrow's errors: a damaged part is one line)
            raise OnnxCamError(f"cannot read index part {part} ({type(exc).__name__}: {str(exc)[:120]}); "
                               "delete it and run again with --resume (its images are redone)") from None
    return done


def read_index(folder: Path):
    """The whole index as one pyarrow Table (for tests and small runs; large ones use pyarrow.dataset)."""
    pa, pq = require_pyarrow()
    parts = part_files(folder)
    if not parts:
        return schema().empty_table()
    # parts written before the curves / reference_map columns existed read with those as nulls
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
