"""Writing results without losing anything: every target path is checked before the first write,
existing files are kept unless the caller says overwrite, and each file is written atomically
(temporary file + rename), so an interrupted run never leaves half a PNG in place of a good one.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxCamError


def safe_name(text: str) -> str:
    """Tensor names like '/layer4/relu/Relu_output_0' as file-name parts."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "layer"


def check_targets(paths: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
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


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
