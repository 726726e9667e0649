"""Writing results without losing anything: every target path is checked before the first write,
existing files are kept unless the caller says overwrite, and each file is written atomically
(temporary file + rename), so an interrupted run never leaves half a PNG in place of a good one.
Every OSError (disk full, read-only folder, a file where a folder goes, a name too long) becomes one
OnnxCamError naming the path, the cause in words and the fix; the temporary file goes with it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxCamError, os_error


def safe_name(text: str) -> str:
    """Tensor names like '/layer4/relu/Relu_output_0' as file-name parts."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "layer"


def unique_paths(named: list[tuple[Path, str]]) -> list[Path]:
    """The paths of (path, what it holds) pairs, made distinct: names that collide once made
    safe ('a/b' and 'a_b' -> 'a_b'; 'A' and 'a' on a case-insensitive disk) each get a short hash
    of what they hold, so one result never overwrites another and each name is the same every run."""
    groups: dict[str, list[int]] = {}
    for i, (path, _) in enumerate(named):
        groups.setdefault(str(path).casefold(), []).append(i)
    out = [path for path, _ in named]
    for rows in groups.values():
        if len(rows) > 1:
            for i in rows:
                path, what = named[i]
                tag = hashlib.sha1(what.encode()).hexdigest()[:8]
                out[i] = path.with_name(f"{path.stem}-{tag}{path.suffix}")
    return out


NAME_MAX = 255   # bytes per file or folder name on Linux, macOS and Windows file systems


def _check_name_lengths(path: Path) -> None:
    for part in Path(path).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OnnxCamError(f"cannot write {path}: the name {part[:40]}... is longer than the "
                               f"{NAME_MAX} bytes a file system allows; choose a shorter output path "
                               "(or shorter image file names)")


def check_folder(folder: Path) -> None:
    """Refuse, before a long run, an output folder that cannot be created: a file on its path, or
    a name longer than the file system allows (the run's results would otherwise be lost)."""
    folder = Path(folder)
    _check_name_lengths(folder)
    existing = folder
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        is_file = existing.exists() and not existing.is_dir()
    except OSError as exc:
        raise os_error("create the folder", folder, exc) from None
    if is_file:
        raise OnnxCamError(f"cannot create the folder {folder}: {existing} is a file, not a folder; "
                           "choose another output path")


def check_targets(paths: list[Path], overwrite: bool) -> None:
    for folder in dict.fromkeys(p.parent for p in paths):
        check_folder(folder)
    for p in paths:
        _check_name_lengths(p)
    if overwrite:
        return
    try:
        existing = [p for p in paths if p.exists()]
    except OSError as exc:
        raise os_error("check", exc.filename or paths[0], exc) from None
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OnnxCamError(f"{existing[0]} already exists{more}; choose another output path or pass "
                           "--overwrite")


def fresh_folder(base: Path) -> Path:
    """base, or base-1, base-2, ... : the first that does not exist yet."""
    if not base.exists():
        return base
    i = 1
    while base.with_name(f"{base.name}-{i}").exists():
        i += 1
    return base.with_name(f"{base.name}-{i}")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:   # exist_ok covers folders only: a file is in the way
        raise OnnxCamError(f"cannot create the folder {folder}: {exc.filename or folder} is a file, "
                           "not a folder; choose another output path") from None
    except OSError as exc:
        raise os_error("create the folder", folder, exc) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _atomic_write(path: Path, data: bytes) -> None:
    _check_name_lengths(path)
    _make_folder(path.parent)
    try:
        if path.is_dir():
            raise OnnxCamError(f"cannot write {path}: a folder of that name is in the way; remove it or "
                               "choose another output path")
        # a short temporary name: one derived from a long target name could itself be too long
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".onnxcam-", suffix=".tmp")
    except OSError as exc:
        raise os_error("write", path, exc) from None
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise os_error("write", path, exc) from None
        raise


def write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OnnxCamError(f"could not encode {path}")
    _atomic_write(path, buf.tobytes())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write(path, buf.getvalue())


def write_text(path: Path, text: str) -> None:
    _atomic_write(path, text.encode())


def write_json(path: Path, data) -> None:
    _atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, data)
