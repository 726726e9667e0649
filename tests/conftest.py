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


def default_sigint() -> None:
    """preexec_fn for a child a test will Ctrl-C: SIGINT back to its default. A suite started as
    an asynchronous command of a shell without job control (`(cmd &)`, nohup) inherits SIGINT
    ignored, and an ignored SIGINT stays ignored across exec, so Python would never raise
    KeyboardInterrupt in the child and the test would measure how it was launched."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


OWN_PROCESS_CHILD = "ONNXCAM_TEST_CHILD"   # set in the child, so the test runs there instead of spawning again
OWN_PROCESS_TIMEOUT = 1800                 # seconds; the slowest parity test takes ~2 min on 2 cores


def pytest_configure(config):
    config.addinivalue_line("markers", "own_process: run this test in a fresh Python process (see "
                                       "pytest_pyfunc_call in conftest.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run tests marked own_process in a fresh interpreter and report its outcome here.

    Why: the torch parity tests export and hold full-size networks (TorchScript/dynamo export, torch's
    autograd, onnxruntime sessions of the gradient and LRP graphs) and one of them alone needs ~2.5 GB.
    In the long-lived test process that comes on top of everything earlier tests left mapped, so the
    suite's peak was the sum (4.6 GB). In a child the memory is returned to the OS when it exits. A new
    process (not fork) because torch and onnxruntime keep thread pools that a fork would copy half-alive.
    """
    import os
    import subprocess
    if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(OWN_PROCESS_CHILD):
        return None
    root = Path(pyfuncitem.config.rootpath)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--no-header",
           "-m", "", pyfuncitem.nodeid]
    env = dict(os.environ, **{OWN_PROCESS_CHILD: "1"})
    _drop_cached_sessions()   # parent and child are alive together: the parent holds as little as it can
    _release_freed_memory()
    try:
        run = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                             timeout=OWN_PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the test's own process ran longer than {OWN_PROCESS_TIMEOUT} s", pytrace=False)
    output = run.stdout + run.stderr
    if run.returncode == 0 and " passed" in output:
        return True
    if run.returncode == 0 and " skipped" in output:
        reason = [line for line in output.splitlines() if line.startswith("SKIPPED")]
        pytest.skip(reason[0] if reason else "skipped in its own process")
    pytest.fail(f"in its own process (exit {run.returncode}):\n{output[-6000:]}", pytrace=False)


def _drop_cached_sessions() -> None:
    """Drop the onnxruntime sessions every live Explainer caches (session-scoped fixtures such as
    `lite0` keep theirs for the whole run otherwise); the next test that needs one builds it again."""
    import gc
    from onnxcam.engine import SessionCache
    for obj in gc.get_objects():
        if isinstance(obj, SessionCache):
            obj.clear()


def pytest_runtest_teardown(item, nextitem):
    """Release what the test freed (and, between test files, every cached session); with
    ONNXCAM_RSS_LOG=FILE, append each test's current and peak RSS and the largest own_process
    child's peak (MB), to find what holds memory."""
    import os
    import resource
    if nextitem is None or nextitem.path != item.path:
        _drop_cached_sessions()
    _release_freed_memory()
    log = os.environ.get("ONNXCAM_RSS_LOG")
    if log:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024   # largest child so far
        with open(log, "a") as f:
            f.write(f"{current:8.0f} {peak:8.0f} {child:8.0f} {item.nodeid}\n")
