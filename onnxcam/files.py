"""Read the files onnxcam is given: regular files only, each kind with a size cap, paths named by a
model's sidecar kept inside the model's folder.

Why one reader: every file onnxcam opens (model, sidecar and --preprocess JSON, labels, boxes,
images) may be hostile. `/dev/zero` has no end, a FIFO blocks `open()` forever, a 10 GB "labels"
file fills memory, and a sidecar that names `../../etc/passwd` or a symlink out of the folder would
read files the user never meant to hand over. Here each case is one `OnnxCamError` line.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import OnnxCamError

MIB = 1 << 20
# The largest file of each kind onnxcam reads, and what to do about a bigger one.
LIMITS = {
    "model": (2048 * MIB, "protobuf cannot hold more: save the weights as external data "
                          "(onnx.save(model, path, save_as_external_data=True))"),
    "json": (4 * MIB, "a preprocessing, sidecar or boxes file is a few KB: check the path"),
    "labels": (4 * MIB, "a label file holds one class name per line: check the path"),
    "image": (256 * MIB, "convert or downscale the image first"),
    "list": (64 * MIB, "an image list holds one path per line: split it into several lists"),
}
# The most pixels an image may have (8192 x 8192), checked on the header before decoding
# (image_header; formats whose header it cannot read are refused). OpenCV's own limit is left as the
# host application set it: a library import must not change it.
MAX_PIXELS = 8192 * 8192


def read_bytes(path, kind: str, what: str | None = None) -> bytes:
    """The bytes of a regular file of `kind` (a LIMITS key), refusing anything else in one line.

    The file is opened non-blocking and checked with fstat before reading, so a FIFO or device
    never blocks or streams; at most limit + 1 bytes are read even when the size lies (/proc).
    """
    limit, fix = LIMITS[kind]
    what = what or f"{kind} file"
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise OnnxCamError(f"{what} not found: {p} (check the path)") from None
    except IsADirectoryError:
        raise OnnxCamError(f"{what} {p} is a directory, not a file: give the file itself") from None
    except OSError as exc:
        raise OnnxCamError(f"cannot open {what} {p}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise OnnxCamError(f"{what} path {str(p)!r} contains a NUL byte; not a file name") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OnnxCamError(f"{what} {p} is a directory, not a file: give the file itself")
        if not stat.S_ISREG(info.st_mode):
            raise OnnxCamError(f"{what} {p} is not a regular file (a device, pipe or socket); "
                               "onnxcam reads only regular files: copy the content to a file")
        if info.st_size > limit:
            raise OnnxCamError(f"{what} {p} is {_size(info.st_size)}, over onnxcam's "
                               f"{_size(limit)} limit for a {kind} file; {fix}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise OnnxCamError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OnnxCamError(f"{what} {p} is over onnxcam's {_size(limit)} limit for a {kind} file; {fix}")
    return data


def read_text(path, kind: str, what: str | None = None) -> str:
    """A UTF-8 text file (a BOM is accepted), through read_bytes."""
    data = read_bytes(path, kind, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OnnxCamError(f"{what or kind + ' file'} {path} is not UTF-8 text (byte {exc.start}); "
                           "save it as UTF-8") from None


def read_json_object(path, what: str = "JSON file", example: str = "") -> dict:
    """A JSON file whose top level is an object; lists, null or numbers are refused in one line."""
    text = read_text(path, "json", what)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OnnxCamError(f"{what} {path} is not valid JSON: {exc}; fix the file") from None
    except RecursionError:
        raise OnnxCamError(f"{what} {path} nests JSON too deeply to read; fix the file") from None
    if not isinstance(data, dict):
        raise OnnxCamError(f"{what} {path} holds a JSON {_json_kind(data)}, not an object"
                           + (f"; expected {example}" if example else "; expected {\"field\": value, ...}"))
    return data


def check_regular(path: Path, what: str) -> int:
    """The size of a regular file that something else (onnx) will read; refuse devices and pipes."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise OnnxCamError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise OnnxCamError(f"{what} path {str(path)!r} contains a NUL byte; not a file name") from None
    if not stat.S_ISREG(info.st_mode):
        raise OnnxCamError(f"{what} {path} is not a regular file (a directory, device or pipe); "
                           "copy the real file there")
    return info.st_size


def confine(name, folder: Path, what: str, owner) -> Path:
    """The path `name` (taken from a model or its sidecar) inside `folder`, refusing empty names,
    absolute paths, drive letters, `..` and symlinks that lead out. `what` says which field named
    it (e.g. "external data location of tensor 'w'"), `owner` the file that holds the field."""
    if not isinstance(name, str) or not name:
        raise OnnxCamError(f"{what} in {owner} names no file (got {name!r}); give a file name "
                           "relative to the model's folder")
    if "\0" in name:
        raise OnnxCamError(f"{what} {name!r} in {owner} contains a NUL byte; not a file name")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in name:
        raise OnnxCamError(f"{what} {name!r} in {owner} is an absolute path; refusing to read outside "
                           "the model's folder (name a file next to the model)")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise OnnxCamError(f"{what} {name!r} in {owner} contains '..'; refusing to read outside "
                           "the model's folder (name a file next to the model)")
    folder = Path(folder).resolve()
    target = folder / name
    if not target.exists():
        raise OnnxCamError(f"{what} {name!r} in {owner} is missing: copy it next to the model "
                           f"(expected at {target})")
    real = target.resolve()
    if folder != real.parent and folder not in real.parents:
        raise OnnxCamError(f"{what} {name!r} in {owner} is a link that leads outside the model's "
                           "folder; refusing to read it (copy the file into the folder)")
    return target


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n} bytes"


def _json_kind(value) -> str:
    return {list: "list", type(None): "null", bool: "boolean", str: "string"}.get(type(value), "number")
