"""The evaluate report from a real run on the bundled model: plots with axes, labels and legends, no
broken image, no NaN text, thumbnails at the photo's aspect ratio, pointing boxes, the sanity flag,
progress lines off a terminal, and the page as headless Chromium draws it (skipped without it)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnxcam.cli import main
from onnxcam.report import draw_boxes
from onnxcam.svgplot import Series, line_plot, nice_ticks, style
from conftest import LITE0, PHOTOS

CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """What the checks need from a report: images, SVG plots and the visible text."""

    def __init__(self):
        super().__init__()
        self.images, self.svgs, self.text, self._svg, self._skip = [], [], [], None, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "svg":
            self._svg = {"classes": [], "texts": []}
        elif tag in ("style", "title"):
            self._skip += 1
        if self._svg is not None and "class" in attrs:
            self._svg["classes"].append(attrs["class"])

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svgs.append(self._svg)
            self._svg = None
        elif tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._svg is not None:
            self._svg["texts"].append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One real `onnxcam evaluate` run: one photo with a box, two methods, 4 steps, ROAD, sanity."""
    out = tmp_path_factory.mktemp("report")
    err, said = io.StringIO(), io.StringIO()   # not a terminal, as in a log or CI
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(said):
        rc = main(["evaluate", str(LITE0), str(PHOTOS / "coffee.jpg"), "--methods", "gradcam,gradcam++",
                   "--steps", "4", "--boxes", str(PHOTOS / "boxes.json"), "--sanity", "1", "--out", str(out)])
    assert rc == 0, err.getvalue()
    page = Page()
    html = (out / "report.html").read_text()
    page.feed(html)
    return {"out": out, "html": html, "page": page, "stderr": err.getvalue(), "stdout": said.getvalue(),
            "evaluation": json.loads((out / "evaluation.json").read_text())}


def decode(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_no_broken_image_and_thumbnails_keep_the_photo_aspect(report):
    images = report["page"].images
    assert len(images) == 3   # the photo and two overlays
    photo_h, photo_w = cv2.imread(str(PHOTOS / "coffee.jpg")).shape[:2]
    assert photo_w != photo_h
    for attrs in images:
        src = attrs.get("src", "")
        if not src.startswith("data:"):
            assert (report["out"] / src).is_file(), src
            continue
        h, w = decode(src).shape[:2]
        assert abs(h / w - photo_h / photo_w) < 0.02, (h, w)


def test_no_nan_or_inf_text(report):
    text = " ".join(report["page"].text)
    assert not re.search(r"\b(nan|inf|infinity)\b", text, re.IGNORECASE), text


def test_every_plot_has_axis_labels_and_a_legend(report):
    svgs = report["page"].svgs
    assert len(svgs) == 4   # deletion, insertion, ROAD, sanity
    titles = re.findall(r"<svg[^>]*>.*?<title>([^<]*)</title>", report["html"])
    assert [t.split(":")[0].split(" ")[0] for t in titles] == ["Deletion", "Insertion", "ROAD", "Sanity"]
    for svg in svgs:
        assert "axis-label x" in svg["classes"] and "axis-label y" in svg["classes"]
        assert "legend" in svg["classes"]
        numbers = [t for t in svg["texts"] if re.fullmatch(r"-?[\d.]+", t.strip())]
        assert len(numbers) >= 4   # tick labels on both axes
    road = next(s for s in svgs if any("MoRF" in t for t in s["texts"]))
    assert sum("@" in t and "LeRF" in t for t in road["texts"]) == 2   # one legend entry per method


def test_sanity_flag_follows_the_figures(report):
    rows = {m: d["sanity"] for m, d in report["evaluation"]["methods"].items()}
    for rs in rows.values():
        assert all(r["stays_similar"] == (r["spearman"] > 0.5) for r in rs)
    flagged = [m for m, rs in rows.items() if any(r["stays_similar"] for r in rs)]
    printed = [l for l in report["stdout"].splitlines() if "sanity:" in l]
    assert len(printed) == 2 and sum("stays similar (flagged)" in l for l in printed) == len(flagged)
    text = " ".join(report["page"].text)
    assert ("stays similar" in text) == bool(flagged)
    for m in flagged:
        assert re.search(rf"{re.escape(m)}\s+\(Spearman", text)


def test_boxes_are_in_the_evaluation_and_on_the_overlays(report):
    boxes = report["evaluation"]["boxes"]
    assert len(boxes) == 1 and len(boxes[0]) == 1
    x0, y0, x1, y1 = boxes[0][0]
    assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
    view = np.full((224, 224, 3), 128, np.uint8)
    heat = np.zeros((224, 224), np.float32)
    heat[100, 100] = 1
    drawn = draw_boxes(view, [(50, 60, 150, 160)], heat, hit=True)
    assert (drawn[60, 100] == 255).all() and (drawn[110, 50] == 255).all()   # the white frame
    ring = drawn[100, 91:110]
    assert ((ring[:, 1] > 150) & (ring[:, 0] < 60)).any()                   # green ring: a hit
    missed = draw_boxes(view, [(50, 60, 150, 160)], heat, hit=False)[100, 91:110]
    assert ((missed[:, 0] > 180) & (missed[:, 1] < 60)).any()               # red ring: a miss


def test_a_progress_line_for_every_step_off_a_terminal(report):
    lines = [l for l in report["stderr"].splitlines() if l.startswith("onnxcam: evaluate [")]
    steps = [l.split("] ", 1)[1] for l in lines]
    for method in ("gradcam", "gradcam++"):
        for what in ("explaining", "Average Drop", "deletion / insertion", "ROAD MoRF", "ROAD LeRF", "sanity"):
            assert any(s.startswith(method + " ") or s.startswith(method + ":") for s in steps if what in s), \
                (method, what, steps)
    assert lines[-1].startswith("onnxcam: evaluate [12/12]")


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not "
                                    "installed; .ci/run installs Debian's chromium package")


def screenshot(page: Path) -> np.ndarray:
    """The page as headless Chromium draws it in a 1400x2000 window (BGR)."""
    shot = page.with_suffix(".png")
    profile = tempfile.mkdtemp()
    try:
        subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--no-first-run",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1400,2000", page.as_uri()], capture_output=True, timeout=180, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2000, 1400)
    return img


def colourful(img: np.ndarray) -> np.ndarray:
    return (img.max(axis=2).astype(int) - img.min(axis=2)) > 80


@needs_chromium
def test_report_as_chromium_draws_it(report):
    img = screenshot(report["out"] / "report.html")
    ink = (img < 200).any(axis=2)
    assert ink.mean() > 0.03 and img.std() > 20          # text, plots and pictures, not a blank page
    assert colourful(img[:1000]).mean() > 0.001          # the plots' coloured curves in the upper half
    assert colourful(img).mean() > 0.01                  # and the overlays


@needs_chromium
def test_comparison_report_as_chromium_draws_it(tmp_path):
    out = tmp_path / "cmp"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["compare", str(LITE0), str(LITE0), str(PHOTOS / "coffee.jpg"), "--out", str(out)]) == 0
    page = Page()
    page.feed((out / "report.html").read_text())
    assert len(page.images) >= 4
    for attrs in page.images:
        decode(attrs["src"])
    assert not re.search(r"\b(nan|inf|infinity)\b", " ".join(page.text), re.IGNORECASE)
    img = screenshot(out / "report.html")
    assert (img < 200).any(axis=2).mean() > 0.01 and colourful(img).mean() > 0.005


# ----- the plot itself

def test_nice_ticks():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0.83) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.1, 1) == [-0.25, 0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(10, 90) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(5, 5) == [5, 5.2, 5.4, 5.6, 5.8, 6.0]


def test_styles_differ_and_non_finite_points_leave_gaps():
    styles = [style(k) for k in range(8)]
    for attr in ("color", "dash", "marker"):
        assert len({getattr(s, attr) for s in styles}) == 8
    svg = line_plot([Series("a", [0, 0.5, 1], [0.2, float("nan"), 0.4], style(0)),
                     Series("b", [0, 1], [float("inf"), 0.1], style(1))], "t", "x", "y")
    assert not re.search(r"nan|inf", svg, re.IGNORECASE)
    assert svg.count("<polyline") == 3   # a: two runs around the gap; b: one point
