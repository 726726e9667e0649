"""Dataset runs (onnxcam/dataset): names -> image files, the bounded prefetcher, the Parquet index,
and a run killed mid-way then resumed giving the rows of an uninterrupted run, without duplicates."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import LITE0, ROOT, default_sigint
from dataset_images import make_dataset
from onnxcam.cli import main
from onnxcam.dataset import expand_inputs, is_dataset
from onnxcam.dataset import prefetch
from onnxcam.dataset.index import read_index, require_pyarrow
from onnxcam.errors import OnnxCamError
from onnxcam.preprocess import PreprocessSpec, load_images
from onnxcam.progress import Progress


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    make_dataset(folder / "images", 60, seed=1)
    return folder / "images"


# ----- discovery
def test_folder_glob_and_list_expand_in_order_without_duplicates(tmp_path, dataset):
    folder = expand_inputs([dataset])
    assert len(folder) == 60 and [i.path for i in folder] == sorted(i.path for i in folder)
    (dataset.parent / "notes.md").write_text("not an image")
    globbed = expand_inputs([str(dataset / "c1" / "*.jpg")])
    assert [i.path.parent.name for i in globbed] == ["c1"] * 15
    listing = tmp_path / "subset.txt"
    rel = os.path.relpath(dataset / "c2" / "img_00002.jpg", tmp_path)
    listing.write_text(f"# a comment\n\n{rel}\n{rel}\n{dataset / 'c3' / 'img_00003.jpg'}\n")
    listed = expand_inputs([listing, dataset / "c3" / "img_00003.jpg"])
    assert [i.path.name for i in listed] == ["img_00002.jpg", "img_00003.jpg"]   # the repeat is dropped
    assert listed[0].path == tmp_path / rel   # relative to the list's folder, not the working directory
    assert is_dataset([listing]) and is_dataset([dataset]) and not is_dataset([dataset / "c0" / "img_00000.jpg"])


def test_stems_are_relative_paths_made_unique(tmp_path):
    for name in ("a/b.png", "a_b.png", "c/b.png"):
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"\x89PNG")
    stems = [i.stem for i in expand_inputs([tmp_path])]
    assert len(set(s.casefold() for s in stems)) == 3 and "c_b" in stems
    assert all("/" not in s for s in stems)


def test_names_that_match_nothing_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(OnnxCamError, match="holds no image files"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(OnnxCamError, match="matches no image files"):
        expand_inputs([str(tmp_path / "*.jpg")])
    (tmp_path / "blank.txt").write_text("# nothing\n\n")
    with pytest.raises(OnnxCamError, match="names no image"):
        expand_inputs([tmp_path / "blank.txt"])


def test_a_fifo_in_a_folder_is_skipped_not_read(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "trap.jpg")
    (tmp_path / "ok.png").write_bytes(b"\x89PNG")
    assert [i.path.name for i in expand_inputs([tmp_path])] == ["ok.png"]


# ----- the prefetcher
def test_prefetch_reads_at_most_ahead_images_beyond_the_consumer(dataset):
    paths = [i.path for i in expand_inputs([dataset])]
    pulled = []

    def source():
        for p in paths:
            pulled.append(p)
            yield p

    gen = prefetch.decoded(source(), PreprocessSpec(), workers=2, ahead=5)
    first = next(gen)
    assert first.path == paths[0] and len(pulled) <= 6
    for _ in range(9):
        next(gen)
    assert len(pulled) <= 10 + 5
    gen.close()   # cancels what is queued, waits for the running decodes


def test_prefetched_batches_equal_load_images(dataset):
    paths = [i.path for i in expand_inputs([dataset])][:7]
    spec = PreprocessSpec(resize="center_crop")
    got = list(prefetch.batches(paths, spec, size=3, workers=2))
    assert [len(b.items) for b in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b.x for b in got]), load_images(paths, spec))


def test_an_unreadable_image_is_a_slot_with_its_error(tmp_path, dataset):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    good = next(iter(expand_inputs([dataset]))).path
    (b,) = prefetch.batches([good, bad], PreprocessSpec(), size=4)
    assert b.good == [0] and b.x.shape[0] == 1 and "broken.jpg" in b.items[1].error


def test_progress_writes_a_line_every_n_items_off_a_terminal(monkeypatch):
    from onnxcam import progress
    monkeypatch.setattr(progress, "STATUS_INTERVAL", float("inf"))   # only the every-N lines, whatever the clock
    stream = io.StringIO()
    bar = Progress(10, "explain", stream=stream, every=4)
    for _ in range(10):
        bar.update()
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines if "explain" in line][:2] == ["4/10", "8/10"]


# ----- the index
def test_the_core_never_imports_pyarrow():
    code = "import sys, onnxcam, onnxcam.cli, onnxcam.dataset; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr


def test_missing_pyarrow_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(OnnxCamError, match=r'pip install "onnxcam\[data\]"'):
        require_pyarrow()


def _run(*args) -> int:
    return main(["explain", str(LITE0), *map(str, args)])


def test_explain_a_folder_writes_the_index_files_and_error_rows(tmp_path, dataset, capsys):
    (tmp_path / "imgs").mkdir()
    paths = sorted(dataset.rglob("*.jpg"))[:5]
    for p in paths:
        (tmp_path / "imgs" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "imgs" / "zz_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out"
    assert _run(tmp_path / "imgs", "--method", "gradcam,hirescam", "--out", out, "--part-size", "2") == 0
    said = capsys.readouterr().out
    assert "explained 5 of 6 images" in said and "1 could not be explained" in said
    rows = read_index(out / "index").to_pylist()
    assert len(rows) == 5 * 2 + 1 and len(list((out / "index").glob("part-*.parquet"))) == 3
    broken = [r for r in rows if r["error"]]
    assert len(broken) == 1 and broken[0]["path"].endswith("zz_broken.jpg") and broken[0]["method"] is None
    ok = [r for r in rows if not r["error"]]
    assert {r["method"] for r in ok} == {"gradcam", "hirescam"}
    for r in ok:
        assert r["map_shape"] == [7, 7] and len(r["raw_map"]) == 49 and np.isfinite(r["raw_map"]).all()
        assert r["top_classes"][0] == r["target"] and r["probability"] is not None
        assert any(f.endswith(".npz") for f in r["files"]) and all(Path(f).exists() for f in r["files"])
    assert len(list(out.glob("*montage.png"))) == 5
    # the index's map is the one `explain` gives for that image alone
    from onnxcam import Explainer
    res = Explainer(LITE0).explain(ok[0]["path"], method=ok[0]["method"])
    np.testing.assert_allclose(ok[0]["raw_map"], res.raw[ok[0]["layer"]][0].ravel(), rtol=1e-4, atol=1e-6)


def test_a_dataset_run_refuses_a_used_folder_and_conflicting_flags(tmp_path, dataset, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.png").write_bytes(b"x")
    assert _run(dataset / "c0", "--out", tmp_path / "out", "--save", "none") == 2
    assert "is not empty" in capsys.readouterr().err
    assert _run(dataset / "c0", "--out", tmp_path / "out", "--resume", "--overwrite") == 2
    assert "give one of them" in capsys.readouterr().err
    assert _run(dataset / "c0", "--out", tmp_path / "o2", "--save", "pictures") == 2
    assert "--save takes" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.png").read_bytes() == b"x"


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "onnxcam", "explain", str(LITE0), *map(str, args)]


def _index_rows(out: Path) -> dict[str, dict]:
    rows = read_index(out / "index").to_pylist()
    keyed = {r["path"]: r for r in rows}
    assert len(keyed) == len(rows), "an image is in the index twice"
    return keyed


ENV = os.environ | {"PYTHONPATH": str(ROOT)}
FLAGS = ["--method", "gradcam", "--save", "none", "--part-size", "4", "--max-batch", "4", "--workers", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dataset) -> dict[str, dict]:
    whole = tmp_path_factory.mktemp("whole") / "out"
    subprocess.run(_cli(dataset, "--out", whole, *FLAGS), check=True, env=ENV, capture_output=True)
    return _index_rows(whole)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_then_resumed_run_equals_an_uninterrupted_one(tmp_path, dataset, uninterrupted, how):
    """Kill the run once its first part is on disk; --resume finishes it: the same rows as one
    uninterrupted run, none twice (SIGINT: exit 130 and the finished images kept)."""
    env, flags, cut = ENV, FLAGS, tmp_path / "cut"
    proc = subprocess.Popen(_cli(dataset, "--out", cut, *flags), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while not list((cut / "index").glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    killed = _index_rows(cut)
    assert 0 < len(killed) < 60, "the run was not cut mid-way"
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in err
    resumed = subprocess.run(_cli(dataset, "--out", cut, *flags, "--resume"), env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(killed)} already in the index)" in resumed.stdout
    a, b = uninterrupted, _index_rows(cut)
    assert sorted(a) == sorted(b) and len(a) == 60
    for path, row in a.items():
        assert b[path]["target"] == row["target"] and b[path]["top_classes"] == row["top_classes"]
        np.testing.assert_allclose(b[path]["raw_map"], row["raw_map"], rtol=1e-5, atol=1e-6)
    assert not list((cut / "index").glob(".onnxcam-*"))   # no temporary left from the killed write


def test_evaluate_takes_a_list_file(tmp_path, dataset):
    """evaluate (and compare, through the same expansion) read a list file's images, streamed into
    the index as a folder's (tests/test_dataset_report.py checks the figures)."""
    paths = sorted(dataset.rglob("*.jpg"))[:2]
    listing = tmp_path / "two.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    out = tmp_path / "ev"
    assert main(["evaluate", str(LITE0), str(listing), "--methods", "gradcam", "--steps", "2", "--no-road",
                 "--out", str(out)]) == 0
    import json
    assert json.loads((out / "evaluation.json").read_text())["images"] == 2
    assert [r["path"] for r in read_index(out / "index").to_pylist()] == [str(p) for p in paths]


def test_resume_with_other_methods_is_refused(tmp_path, dataset, capsys):
    out = tmp_path / "out"
    assert _run(dataset / "c0", "--method", "gradcam", "--save", "none", "--out", out, "--part-size", "4") == 0
    assert _run(dataset / "c0", "--method", "hirescam", "--save", "none", "--out", out, "--resume") == 2
    assert "holds a run with other methods" in capsys.readouterr().err
    assert _run(dataset / "c0", "--method", "gradcam", "--save", "none", "--out", out, "--resume") == 0
    assert "(15 already in the index)" in capsys.readouterr().out
    # another command's index: evaluate on explain's, and explain on that refused too
    assert main(["evaluate", str(LITE0), str(dataset / "c0"), "--methods", "gradcam", "--steps", "2",
                 "--no-road", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "onnxcam: error:" in err and "another command" in err and "Traceback" not in err
    ev = tmp_path / "ev"
    assert main(["evaluate", str(LITE0), str(dataset / "c0"), "--methods", "gradcam", "--steps", "2",
                 "--no-road", "--out", str(ev), "--part-size", "8"]) == 0
    capsys.readouterr()
    assert _run(dataset / "c0", "--method", "gradcam", "--save", "none", "--out", ev, "--resume") == 2
    assert "another command" in capsys.readouterr().err


def test_resume_redoes_images_whose_part_was_lost_and_rewrites_their_files(tmp_path, dataset, capsys):
    """A kill between an image's files and its part: --resume redoes it, replacing its files."""
    out = tmp_path / "out"
    flags = ["--method", "gradcam", "--save", "npz", "--out", out, "--part-size", "4", "--max-batch", "4"]
    assert _run(dataset / "c0", *flags) == 0
    parts = sorted((out / "index").glob("part-*.parquet"))
    lost = {r["path"] for r in read_index(out / "index").to_pylist()} - \
        {r["path"] for p in parts[:-1] for r in read_index_part(p)}
    parts[-1].unlink()
    capsys.readouterr()
    assert _run(dataset / "c0", *flags, "--resume") == 0
    assert f"explained {len(lost)} of 15 images (12 already in the index)" in capsys.readouterr().out
    rows = read_index(out / "index").to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in sorted((dataset / "c0").glob("*.jpg")))
    assert len(list(out.glob("*.npz"))) == 15


def read_index_part(part: Path) -> list[dict]:
    _, pq = require_pyarrow()
    return pq.read_table(part).to_pylist()
