"""Which image files a run covers: the paths, folders, globs and list files a user names, expanded
to one ordered list of image files, each with a stable short name for its output files.

Why its own step: a dataset is named, not typed out. `explain model.onnx val/ --out OUT` must find
the 50,000 images under `val/` (recursively), `"val/**/*.JPEG"` the ones a glob matches, and
`subset.txt` the ones its lines name (one path per line, relative to the list file's folder;
blank lines and lines starting with # skipped). The order is deterministic (sorted within each
folder or glob, in the order the user named them), duplicates are dropped (a resumed run keys its
index on the path), and a name that matches nothing is one OnnxCamError line, before any work.

Only regular files whose suffix is an image or array format onnxcam reads are taken from folders
and globs (symlinked folders are not followed: a link loop cannot hang the walk); files named one
by one, directly or in a list, are passed on as given and checked when read (files.read_bytes:
regular file, size cap; image_header: pixel cap before decoding).
"""
from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import OnnxCamError
from ..files import read_text
from ..output import safe_name, unique_paths

#: Suffixes taken from folders and globs (case-insensitive): what preprocess.read_pixels decodes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                  ".jp2", ".npy")
#: Suffixes of list files: one image path per line.
LIST_SUFFIXES = (".txt", ".lst", ".list")
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One image of a run: its path (as the index records it) and a file-name stem for its outputs,
    unique within the run and the same every run (its path relative to the folder or list named)."""
    path: Path
    stem: str


def is_dataset(names) -> bool:
    """Whether any name is a folder, a glob or a list file (a run then streams, with an index)."""
    return any(_kind(str(n)) != "file" for n in names)


def expand_inputs(names) -> list[Item]:
    """The image files the names cover, in order, without duplicates (see the module docstring)."""
    found: list[tuple[Path, str]] = []
    for name in names:
        text = str(name)
        kind = _kind(text)
        if kind == "folder":
            found += _walk(Path(text))
        elif kind == "glob":
            found += _glob(text)
        elif kind == "list":
            found += _read_list(Path(text))
        else:
            found.append((Path(text), Path(text).stem))
    seen, items = set(), []
    for path, stem in found:
        if str(path) not in seen:
            seen.add(str(path))
            items.append((path, stem))
    if not items:
        raise OnnxCamError("no images given; name image files, folders, globs or a list file (.txt)")
    stems = unique_paths([(Path(safe_name(stem)), str(path)) for path, stem in items])
    return [Item(path, str(stem)) for (path, _), stem in zip(items, stems)]


def _kind(text: str) -> str:
    if os.path.isdir(text):
        return "folder"
    if GLOB_CHARS & set(text) and not os.path.exists(text):
        return "glob"
    if text.lower().endswith(LIST_SUFFIXES):
        return "list"
    return "file"


def _is_image_file(path: str) -> bool:
    """A regular file (not a link to a folder, a FIFO or a device) with an image suffix."""
    if not path.lower().endswith(IMAGE_SUFFIXES):
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:   # a broken link: skipped, as a folder walk skips what it cannot read
        return False


def _relative_stem(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel.with_suffix("")) if rel.parts else path.stem


def _walk(folder: Path) -> list[tuple[Path, str]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=None, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            if _is_image_file(full):
                out.append((Path(full), _relative_stem(Path(full), folder)))
    if not out:
        raise OnnxCamError(f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES[:6])} ...); "
                           "check the path")
    return out


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (stems are relative to it)."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if GLOB_CHARS & set(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _glob(pattern: str) -> list[tuple[Path, str]]:
    root = _glob_root(pattern)
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if _is_image_file(p))
    if not paths:
        raise OnnxCamError(f"the pattern {pattern!r} matches no image files; check it (quote it so the "
                           "shell does not expand it, and use ** for subfolders)")
    return [(Path(p), _relative_stem(Path(p), root)) for p in paths]


def _read_list(list_file: Path) -> list[tuple[Path, str]]:
    folder = list_file.parent
    out = []
    for line in read_text(list_file, "list", "image list").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if "\0" in entry:
            raise OnnxCamError(f"image list {list_file} has a line with a NUL byte; one path per line")
        path = Path(entry) if os.path.isabs(entry) else folder / entry
        out.append((path, str(Path(entry).with_suffix("")) if not os.path.isabs(entry) else path.stem))
    if not out:
        raise OnnxCamError(f"image list {list_file} names no image; write one path per line "
                           "(relative to the list's folder)")
    return out
