"""A throw-away folder per fuzz case: the model's folder, an `outside` folder with a canary, and
the small models and images the cases start from.

Everything a case writes or plants lives under one temporary folder that is removed afterwards;
the only files read from the repository are its bundled models and photos.
"""
from __future__ import annotations

import functools
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from nets import small_cnn  # noqa: E402  (tests/nets.py: small classifiers built with onnx.helper)

PADDLE_DIR = REPO / "models" / "rapidocr_cls"
PADDLE_NAME = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
LITE0 = REPO / "models" / "efficientnet_lite0" / "model.onnx"
PHOTO = REPO / "models" / "photos" / "chelsea.jpg"
SMALL_SIZE, SMALL_CLASSES = 32, 10
SECRET = "ONNXCAM-CANARY-7f3a9c"   # never a label, layer or path onnxcam would print by itself


@functools.lru_cache(maxsize=None)
def small_model_bytes(head: str = "gap") -> bytes:
    """The 32x32, 10-class CNN of tests/nets.py, serialized once."""
    return small_cnn(head=head, size=SMALL_SIZE, classes=SMALL_CLASSES).SerializeToString()


def small_model(head: str = "gap") -> onnx.ModelProto:
    return onnx.load_model_from_string(small_model_bytes(head))


@functools.lru_cache(maxsize=None)
def paddle_bytes() -> bytes:
    return (PADDLE_DIR / PADDLE_NAME).read_bytes()


class Sandbox:
    """root/model (the model's folder), root/outside (canary files), root/out (outputs)."""

    def __init__(self, root: Path):
        self.root = root
        self.model_dir = root / "model"
        self.outside = root / "outside"
        self.out = root / "out"
        self.secret = SECRET
        self.model_dir.mkdir()
        self.outside.mkdir()

    # ----- planted files
    def canary_labels(self, lines: int = SMALL_CLASSES) -> Path:
        """A label file outside the model's folder: if onnxcam reads it, the secret gets printed."""
        path = self.outside / "secret.txt"
        path.write_text("".join(f"{self.secret}-{i}\n" for i in range(lines)))
        return path

    def fifo(self, path: Path) -> Path:
        os.mkfifo(path)
        return path

    def labels(self, lines: int = SMALL_CLASSES, name: str = "labels.txt") -> Path:
        path = self.model_dir / name
        path.write_text("".join(f"class_{i}\n" for i in range(lines)))
        return path

    # ----- models and images
    def write_model(self, data: bytes | onnx.ModelProto, name: str = "model.onnx") -> Path:
        path = self.model_dir / name
        path.write_bytes(data if isinstance(data, bytes) else data.SerializeToString())
        return path

    def image(self, name: str = "img.png", hw=(40, 50), channels: int = 3, seed: int = 0,
              dtype=np.uint8) -> Path:
        rng = np.random.default_rng(seed)
        top = 65535 if dtype == np.uint16 else 255
        shape = tuple(hw) + ((channels,) if channels > 1 else ())
        img = (rng.random(shape) * top).astype(dtype)
        path = self.root / name
        if not cv2.imwrite(str(path), img):
            raise RuntimeError(f"OpenCV could not write {name}")
        return path


def make_sandbox() -> Sandbox:
    return Sandbox(Path(tempfile.mkdtemp(prefix="onnxcam-fuzz-")))


def remove_sandbox(box: Sandbox) -> None:
    """Remove the folder, even where a case made parts of it read-only."""
    def unlock(func, path, _exc):
        try:
            os.chmod(os.path.dirname(path), stat.S_IRWXU)
            os.chmod(path, stat.S_IRWXU)
            func(path)
        except OSError:
            pass
    if not box.root.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(box.root, onexc=unlock)
    else:
        shutil.rmtree(box.root, onerror=unlock)


def execute(plan, keep: Path | None = None):
    """Plant a plan's files in a fresh sandbox, run the case, remove the sandbox.
    Returns (case, outcome). With `keep`, a failing case's sandbox is moved there to replay it."""
    from .harness import run

    box = make_sandbox()
    try:
        case = plan.make(box)
        outcome = run(case)
        if keep is not None and outcome.failed:
            keep.mkdir(parents=True, exist_ok=True)
            target = keep / box.root.name
            shutil.move(str(box.root), target)
            case.cwd = target
            return case, outcome
        return case, outcome
    finally:
        if box.root.exists():
            remove_sandbox(box)
