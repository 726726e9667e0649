"""Shared fixtures: the bundled real models and photos, and exports made once per session."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
PHOTOS = MODELS / "photos"
LITE0 = MODELS / "efficientnet_lite0" / "model.onnx"
PADDLE_CLS = MODELS / "rapidocr_cls" / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
sys.path.insert(0, str(ROOT / "converters"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def photo_paths(n: int | None = None) -> list[Path]:
    paths = sorted(PHOTOS.glob("*.jpg"))
    return paths[:n] if n else paths


def cat_and_coffee() -> list[Path]:
    """The two bundled photos with one clear ImageNet object each (285 Egyptian cat, 967 espresso)."""
    return [p for p in photo_paths() if p.stem in ("chelsea", "coffee")]


@pytest.fixture(scope="session")
def lite0():
    import onnxcam
    return onnxcam.Explainer(LITE0)


@pytest.fixture(scope="session")
def photos():
    return photo_paths()


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


def require_torch():
    import torch  # the test extras install it: a broken install fails instead of skipping
    return torch


def random_images(n: int, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n,) + tuple(shape)).astype(np.float32)


@pytest.fixture(scope="session")
def lite0_variants(tmp_path_factory):
    """FP16 (float32 or float16 I/O), static INT8 QDQ and dynamic INT8 builds of the bundled model
    (converters/quantize.py)."""
    from quantize import to_fp16, to_int8_dynamic, to_int8_static
    out = tmp_path_factory.mktemp("quant")
    return {"fp16": to_fp16(LITE0, out / "fp16.onnx"),
            "fp16_io": to_fp16(LITE0, out / "fp16_io.onnx", keep_io_types=False),
            "int8_static": to_int8_static(LITE0, out / "int8_static.onnx"),
            "int8_dynamic": to_int8_dynamic(LITE0, out / "int8_dynamic.onnx")}


def _release_freed_memory() -> None:
    """Collect cycles and hand freed heap pages back to the OS (glibc's malloc_trim). One process runs
    ~500 tests that build and drop models of up to 0.5 GB; without this, freed memory stays mapped as
    fragments and every later test's peak starts from the high-water mark of the ones before it."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def pytest_runtest_teardown(item):
    """Release what the test freed; with ONNXCAM_RSS_LOG=FILE, append each test's current and peak
    RSS (MB), to find what holds memory."""
    import os
    import resource
    _release_freed_memory()
    log = os.environ.get("ONNXCAM_RSS_LOG")
    if log:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with open(log, "a") as f:
            f.write(f"{current:8.0f} {peak:8.0f} {item.nodeid}\n")
