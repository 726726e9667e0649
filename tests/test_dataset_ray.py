"""`explain DIR --engine ray` on a local Ray cluster (2 CPUs, started by the run): the index equals
the single-machine run's row for row, with an Explainer actor killed mid-run (Ray restarts it and
retries its batch: no row lost or duplicated)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import LITE0, ROOT
from dataset_images import make_dataset
from onnxcam.dataset.index import read_index

pytest.importorskip("ray.data", reason="the ray extra is not installed")   # pip install ".[ray]"

ENV = os.environ | {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
FLAGS = ["--method", "gradcam", "--part-size", "4", "--max-batch", "4", "--workers", "2"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "onnxcam", "explain", str(LITE0), *map(str, args)]


def _actor_pids() -> list[int]:
    """Processes whose title Ray set to our actor's (ray::MapWorker(MapBatches(ExplainActor)) ...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ExplainActor" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_ray_run_with_a_killed_worker_equals_the_local_run(tmp_path):
    images = tmp_path / "images"
    make_dataset(images, 24, seed=2)
    local, remote = tmp_path / "local", tmp_path / "ray"
    subprocess.run(_cli(images, "--out", local, "--save", "none", *FLAGS), check=True, env=ENV, capture_output=True)
    proc = subprocess.Popen(_cli(images, "--out", remote, "--engine", "ray", *FLAGS), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 300, None
    while proc.poll() is None and time.monotonic() < deadline:
        pids = _actor_pids()
        if pids and list((remote / "index").glob("part-*.parquet")):
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert killed is not None, "the run ended before a worker could be killed"
    a, b = read_index(local / "index").to_pylist(), read_index(remote / "index").to_pylist()
    assert [r["path"] for r in b] == [r["path"] for r in a] and len(a) == 24   # same order, none twice
    for x, y in zip(a, b):
        assert (x["target"], x["top_classes"], x["layer"]) == (y["target"], y["top_classes"], y["layer"])
        np.testing.assert_allclose(y["raw_map"], x["raw_map"], rtol=1e-5, atol=1e-6)
    assert "explained 24 of 24 images" in out
