"""Dataset reports (issue 14, item 5): `evaluate` and `compare` over a folder stream into the Parquet
index (a row per image x method x layer with the image's figures), and the report made from the
index gives the means with seeded bootstrap intervals, the worst and best images, histograms, a
sortable table; a resumed run gives the report of an uninterrupted one."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import LITE0
from dataset_images import make_dataset
from onnxcam.cli import main
from onnxcam.dataset.index import read_index
from onnxcam.dataset.summary import bootstrap_interval

pytest.importorskip("pyarrow")
FAST = ["--methods", "gradcam", "--steps", "4", "--no-road", "--max-batch", "2", "--part-size", "2"]


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    make_dataset(root / "images", 6, seed=2, side=120, subfolders=2)
    return root / "images"


@pytest.fixture(scope="module")
def evaluated(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "out"
    boxes = out.parent / "boxes.json"   # two of the six images have a box: the pointing game on those
    boxes.write_text(json.dumps({"boxes": {"img_00000.jpg": [[0.1, 0.1, 0.9, 0.9]],
                                           "img_00003.jpg": [[0.0, 0.0, 0.3, 0.3]]}}))
    rc, said, err = run("evaluate", LITE0, folder, *FAST, "--boxes", boxes, "--out", out)
    assert rc == 0, err
    return {"out": out, "stdout": said, "evaluation": json.loads((out / "evaluation.json").read_text()),
            "rows": read_index(out / "index").to_pylist(), "html": (out / "report.html").read_text()}


# ----- the interval

def test_bootstrap_interval_is_seeded_inside_the_range_and_near_the_normal_one():
    rng = np.random.default_rng(5)
    v = rng.normal(3.0, 2.0, 400)
    lo, hi = bootstrap_interval(v)
    assert (lo, hi) == bootstrap_interval(v)                  # seeded: the same report every time
    assert lo < v.mean() < hi and v.min() <= lo and hi <= v.max()
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)             # the t / normal interval for this sample
    assert abs((hi - lo) / 2 - half) < 0.1 * half
    assert bootstrap_interval(v, seed=1) != (lo, hi)
    assert bootstrap_interval([0.25]) == (0.25, 0.25) and bootstrap_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    skewed = np.r_[np.zeros(19), 100.0]                       # a 0/100 figure: the interval stays in [0, 100]
    lo, hi = bootstrap_interval(skewed)
    assert 0.0 <= lo < 5.0 < hi <= 100.0
    chunked = bootstrap_interval(v, chunk_bytes=8 * v.size * 7)   # resampled 7 at a time: same draws
    assert chunked == bootstrap_interval(v)


# ----- evaluate over a folder

def test_evaluate_folder_rows_hold_each_images_figures_and_curves(evaluated, folder):
    rows = evaluated["rows"]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in folder.rglob("*.jpg"))
    for r in rows:
        m = dict(r["metrics"])
        boxed = Path(r["path"]).name in ("img_00000.jpg", "img_00003.jpg")
        assert set(m) == {"average_drop", "increase_in_confidence", "deletion_auc", "insertion_auc"} | \
            ({"pointing_hit", "pointing_energy"} if boxed else set())
        assert 0 <= m["average_drop"] <= 100 and m["increase_in_confidence"] in (0.0, 100.0)
        curves = dict(r["curves"])
        assert len(curves["deletion"]) == len(curves["insertion"]) == 5
        assert np.trapezoid(curves["deletion"], dx=0.25) == pytest.approx(m["deletion_auc"])


def test_means_and_intervals_are_those_of_the_index_and_of_a_run_on_the_files(evaluated, folder, tmp_path):
    (group,) = evaluated["evaluation"]["groups"]
    assert evaluated["evaluation"]["interval"] == {"kind": "bootstrap percentile", "level": 0.95,
                                                   "resamples": 1000, "seed": 0}
    for name, figure in group["metrics"].items():
        values = [dict(r["metrics"])[name] for r in evaluated["rows"] if name in dict(r["metrics"])]
        assert figure["mean"] == pytest.approx(np.mean(values)) and figure["n"] == (2 if "pointing" in name else 6)
        assert (figure["low"], figure["high"]) == pytest.approx(bootstrap_interval(values))
        assert figure["low"] <= figure["mean"] <= figure["high"]
    # the same images named one by one (evaluate's whole-batch path) give the same means
    files = sorted(folder.rglob("*.jpg"))
    rc, _, err = run("evaluate", LITE0, *files, "--methods", "gradcam", "--steps", "4", "--no-road",
                     "--boxes", evaluated["out"].parent / "boxes.json", "--out", tmp_path / "files")
    assert rc == 0, err
    whole = json.loads((tmp_path / "files" / "evaluation.json").read_text())["methods"]["gradcam"]["layers"]
    (layer,) = whole.values()
    for name in ("average_drop", "deletion_auc", "insertion_auc", "increase_in_confidence", "pointing_energy"):
        assert group["metrics"][name]["mean"] == pytest.approx(layer[name], rel=1e-4, abs=1e-4)
    assert group["metrics"]["pointing_hit"]["mean"] == pytest.approx(layer["pointing_hit_rate"])


def test_worst_and_best_images_are_ranked_by_their_figures(evaluated):
    (group,) = evaluated["evaluation"]["groups"]
    by_path = {r["path"]: dict(r["metrics"]) for r in evaluated["rows"]}
    for name, lower_is_better in (("deletion_auc", True), ("insertion_auc", False), ("average_drop", True)):
        ranked = sorted(by_path, key=lambda p: (by_path[p][name], p))
        worst = ranked[::-1] if lower_is_better else ranked
        assert [p["path"] for p in group["worst"][name]] == worst[:3]
        assert [p["path"] for p in group["best"][name]] == worst[::-1][:3]
        assert [p["value"] for p in group["worst"][name]] == [by_path[p][name] for p in worst[:3]]
    assert "increase_in_confidence" not in group["worst"]     # a 0/100 figure per image is not ranked


def test_the_report_has_the_table_intervals_histograms_and_picked_overlays(evaluated):
    html = evaluated["html"]
    assert '<table class="sortable">' in html and "addEventListener('click'" in html
    assert "95% bootstrap percentile interval" in html
    (group,) = evaluated["evaluation"]["groups"]
    picked = sum(len(v) for which in ("worst", "best") for v in group[which].values())
    assert html.count('src="data:image/png;base64,') == picked   # every picked image drawn, none missing
    histograms = [s for s in re.findall(r"<svg.*?</svg>", html, re.S) if "per image</title>" in s]
    assert len(histograms) == 6   # drop, increase, deletion, insertion, pointing hit and energy
    for svg in histograms:
        assert 'class="axis-label x"' in svg and 'class="axis-label y"' in svg and 'class="legend"' in svg
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)>.*?</\1>", "", html, flags=re.S))
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)
    assert "means over 6 images" in evaluated["stdout"]


def test_a_resumed_evaluation_gives_the_uninterrupted_report(evaluated, folder, tmp_path):
    out = tmp_path / "cut"
    boxes = evaluated["out"].parent / "boxes.json"
    assert run("evaluate", LITE0, folder, *FAST, "--boxes", boxes, "--out", out)[0] == 0
    parts = sorted((out / "index").glob("part-*.parquet"))
    parts[-1].unlink()                                         # a kill lost the last part
    rc, said, err = run("evaluate", LITE0, folder, *FAST, "--boxes", boxes, "--out", out, "--resume")
    assert rc == 0, err
    assert "evaluated 2 of 6 images (4 already in the index)" in said
    again = json.loads((out / "evaluation.json").read_text())
    first = evaluated["evaluation"]
    for a, b in zip(again["groups"], first["groups"]):
        for name, figure in a["metrics"].items():
            assert figure == pytest.approx(b["metrics"][name], rel=1e-5, abs=1e-6)
        for which in ("worst", "best"):
            assert {k: [p["path"] for p in v] for k, v in a[which].items()} == \
                {k: [p["path"] for p in v] for k, v in b[which].items()}
    rc, _, err = run("evaluate", LITE0, folder, *FAST[:3], "8", *FAST[4:], "--boxes", boxes, "--out", out,
                     "--resume")
    assert rc == 2 and "holds a run with other evaluate" in err   # other --steps: not mixed into one index


def test_ctrl_c_keeps_whole_images_and_resume_finishes_the_report(folder, tmp_path):
    """SIGINT once the first part is on disk: exit 130 with the line saying --resume, only whole
    images in the index; --resume then evaluates the rest and writes the report of all six."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, default_sigint
    out = tmp_path / "cut"
    argv = [sys.executable, "-m", "onnxcam", "evaluate", str(LITE0), str(folder), "--methods", "gradcam,hirescam",
            "--steps", "4", "--no-road", "--max-batch", "1", "--part-size", "1", "--workers", "1", "--out", str(out)]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while not list((out / "index").glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    rows = read_index(out / "index").to_pylist()
    images = {r["path"] for r in rows}
    assert proc.returncode == 130 and "--resume" in err and 0 < len(images) < 6
    assert len(rows) == 2 * len(images)                     # both methods of every image kept, no half image
    assert not (out / "report.html").exists()               # the report comes with the finished run
    resumed = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(images)} already in the index)" in resumed.stdout
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert [g["n"] for g in evaluation["groups"]] == [6, 6] and (out / "report.html").is_file()


def test_sanity_on_a_folder_is_one_line(folder, tmp_path):
    rc, _, err = run("evaluate", LITE0, folder, *FAST, "--sanity", "1", "--out", tmp_path / "s")
    assert rc == 2 and err.count("\n") == 1 and "--sanity" in err


# ----- compare over a folder

@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """LITE0 with noise on its last convolutions' weights: a build whose evidence moves on some images."""
    model = onnx.load(str(LITE0))
    rng = np.random.default_rng(0)
    convs = [n for n in model.graph.node if n.op_type == "Conv"][-6:]
    inits = {i.name: i for i in model.graph.initializer}
    for node in convs:
        w = numpy_helper.to_array(inits[node.input[1]])
        noisy = (w + rng.normal(0, 0.3 * w.std(), w.shape)).astype(w.dtype)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(noisy, node.input[1]))
    path = tmp_path_factory.mktemp("noisy") / "noisy.onnx"
    onnx.save(model, str(path))
    return path


def test_compare_folder_indexes_agreement_per_image_and_shows_where_evidence_moved(folder, noisy, tmp_path):
    out = tmp_path / "cmp"
    rc, said, err = run("compare", LITE0, noisy, folder, "--max-batch", "2", "--part-size", "2",
                        "--map-floor", "0", "--top1-floor", "0", "--out", out)
    assert rc == 0, err
    rows = read_index(out / "index").to_pylist()
    assert len(rows) == 6 and all(r["reference_map"] is not None and r["raw_map"] is not None for r in rows)
    for r in rows:
        m = dict(r["metrics"])
        assert -1 <= m["pearson"] <= 1 and 0 <= m["iou"] <= 1 and m["agreement"] == m["pearson"]
        assert m["activation_pearson"] < 1
    result = json.loads((out / "comparison.json").read_text())
    assert result["images_total"] == 6 and result["passed"]
    pearsons = sorted((dict(r["metrics"])["pearson"], r["path"]) for r in rows)
    assert [i["image"] for i in result["images"]] == [p for _, p in pearsons]      # least agreement first
    (group,) = result["figures"]["groups"]
    assert [p["path"] for p in group["worst"]["pearson"]] == [p for _, p in pearsons]
    assert result["agreement"] == pytest.approx(np.mean([v for v, _ in pearsons]))
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3 * 6           # reference, candidate, difference
    assert html.count("per image</title>") == 3                        # histograms of Pearson, Spearman, IoU
    # the same gate as a run on files: the map floor above the mean fails with exit 1
    rc, said, err = run("compare", LITE0, noisy, folder, "--max-batch", "2", "--map-floor", "0.999",
                        "--top1-floor", "0", "--out", out, "--resume")   # the floors gate the index again
    assert rc == 1 and "FAIL: mean map Pearson" in err and "(6 already in the index)" in said


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed")
def test_the_table_sorts_by_the_clicked_column_in_chromium(tmp_path):
    import subprocess
    import tempfile

    from onnxcam.report import render_dataset
    groups = [{"method": m, "layer": "L", "n": 5, "worst": {}, "best": {}, "mean_curves": {},
               "metrics": {"deletion_auc": {"mean": v, "low": v - 0.01, "high": v + 0.01, "n": 5}}}
              for m, v in (("a", 0.3), ("b", 0.05), ("c", 0.2))]
    evaluation = {"model": "m.onnx", "images": 5, "errors": 0, "steps": 4, "baseline": "zero", "index": "i",
                  "metric_score": "softmax probability", "road_percentages": [], "groups": groups,
                  "histograms": {}, "interval": {"kind": "bootstrap percentile", "level": 0.95, "resamples": 9,
                                                 "seed": 0}}
    page = render_dataset(evaluation, {}, {}).replace("</body>", """<script>
var th = document.querySelectorAll('table.sortable th')[3], order = function () {
  return Array.prototype.map.call(document.querySelectorAll('table.sortable tbody tr'),
                                  function (r) { return r.cells[0].textContent; }).join(''); };
th.click(); var up = order(); th.click(); document.title = 'sorted:' + up + ',' + order();
</script></body>""")
    (tmp_path / "t.html").write_text(page)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--no-first-run",
                              f"--user-data-dir={profile}", "--dump-dom", (tmp_path / "t.html").as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
    assert "<title>sorted:bca,acb</title>" in dom    # ascending by the mean, then descending


# ----- detectors over a folder (--task detect: detection K of each image, chosen batch by batch)

YOLO = Path(__file__).parent / "fixtures" / "yolo" / "yolov8_torchscript.onnx"


def test_detect_over_a_folder_explains_detection_k_of_each_image(folder, tmp_path):
    out = tmp_path / "det"
    rc, said, err = run("explain", YOLO, folder, "--task", "detect", "--method", "gradcam", "--save", "overlays",
                        "--max-batch", "4", "--out", out)
    assert rc == 0, err
    rows = read_index(out / "index").to_pylist()
    assert len(rows) == 6 and all(r["error"] is None and r["notes"][0].startswith("detection 0: ") for r in rows)
    one = sorted(folder.rglob("*.jpg"))[1]
    rc, said, _ = run("explain", YOLO, one, "--task", "detect", "--method", "gradcam", "--json", "--out",
                      tmp_path / "one")
    (det,) = json.loads(said)["detections"]
    (row,) = [r for r in rows if r["path"] == str(one)]
    assert row["target"] == det["candidate"] and row["target_name"] == det["name"]   # the same choice as on files
    # an image without a K-th detection is an error row; the run goes on
    rc, said, err = run("evaluate", YOLO, folder, "--task", "detect", "--detection", "3", "--conf", "0.9", *FAST,
                        "--out", tmp_path / "ev")   # at 0.9 the fixture finds 0 to 16 detections per image
    assert rc == 0, err
    rows = read_index(tmp_path / "ev" / "index").to_pylist()
    missing = [r for r in rows if r["error"] is not None]
    assert 0 < len(missing) < 6 and all("there is no detection 3" in r["error"] for r in missing)
    assert all(dict(r["metrics"])["deletion_auc"] >= 0 for r in rows if r["error"] is None)
    rc, _, err = run("explain", YOLO, folder, "--task", "detect", "--detection", "0,1", "--out", tmp_path / "x")
    assert rc == 2 and "one detection per image" in err
