"""Metrics against hand-computed cases (issue 5, first part)."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from onnxcam.metrics import average_drop_increase, deletion_insertion, pointing_game
from onnxcam.postprocess import softmax
from conftest import cat_and_coffee, random_images
from nets import small_cnn


def test_average_drop_and_increase_by_hand():
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(4, (3, 32, 32), seed=5)
    t = np.array([0, 1, 2, 3])
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(4, 32, 32)).astype(np.float32)
    got = average_drop_increase(ex, x, maps, t)
    y = softmax(ex.forward(x)[0])[np.arange(4), t]
    o = softmax(ex.forward(x * maps[:, None])[0])[np.arange(4), t]
    assert got["average_drop"] == pytest.approx(np.mean(np.maximum(0, y - o) / y) * 100, rel=1e-6)
    assert got["increase_in_confidence"] == pytest.approx(np.mean(o > y) * 100)
    ones = average_drop_increase(ex, x, np.ones_like(maps), t)
    assert ones["average_drop"] == pytest.approx(0, abs=1e-6) and ones["increase_in_confidence"] == 0
    rc = average_drop_increase(ex, x, maps, t, variant="relevancecam")
    median = np.median(maps.reshape(4, -1), axis=1)[:, None, None]
    o2 = softmax(ex.forward(x * np.where(maps >= median, maps, 0)[:, None])[0])[np.arange(4), t]
    d2 = np.maximum(0, y - o2) / y
    assert rc["average_drop"] == pytest.approx(d2[d2 > 0].mean() * 100, rel=1e-6)


def test_a_faithful_map_beats_its_reverse_on_deletion_and_insertion(lite0):
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    res = lite0.explain(x, method="gradcam")
    maps = next(iter(res.maps.values()))
    good = deletion_insertion(lite0, x, maps, res.target, steps=16)
    bad = deletion_insertion(lite0, x, 1.0 - maps, res.target, steps=16)
    for i in range(2):
        assert good["deletion"][i] < bad["deletion"][i]
        assert good["insertion"][i] > bad["insertion"][i]
    curve = good["curves"]["deletion"][0]
    assert len(curve) == 17
    p0 = softmax(res.logits)[0, res.target[0]]
    assert curve[0] == pytest.approx(p0, rel=1e-4)            # nothing removed yet
    assert good["deletion"][0] == pytest.approx(np.trapezoid(curve, dx=1 / 16))


def test_pointing_game_hits_energy_and_tolerance():
    m = np.zeros((2, 50, 50), np.float32)
    m[0, 10, 10] = 1.0                       # inside the box
    m[1, 40, 40] = 1.0                       # 10 px right of / below the box corner
    m[1, 12, 12] = 0.5
    boxes = [[(5, 5, 20, 20)], [(5, 5, 31, 31)]]
    strict = pointing_game(m, boxes=boxes, tolerance=0)
    assert strict["hits"] == [True, False]
    assert strict["energy"] == pytest.approx([1.0, 0.5 / 1.5])
    assert pointing_game(m, boxes=boxes, tolerance=15)["hits"] == [True, True]


def test_spearman_and_ssim_by_hand():
    from onnxcam.metrics import spearman, ssim
    a = np.random.default_rng(0).uniform(size=(20, 20))
    assert spearman(a, a) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.exp(3 * a)) == pytest.approx(1.0)        # rank-based
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, np.random.default_rng(1).uniform(size=(20, 20))) < 0.2


def test_randomizing_the_model_decorrelates_gradcam(lite0):
    from onnxcam.graph.randomize import parametric_layers
    from onnxcam.metrics import cascading_randomization
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    total = len(parametric_layers(lite0.model.proto))
    out = cascading_randomization(lite0, x, "gradcam", steps=[1, total])
    first, last = out["steps"][0], out["steps"][-1]
    assert out["parametric_layers"] == total > 40
    assert last["randomized_layers"] == total
    # measured: Spearman 0.46 -> -0.11, SSIM 0.36 -> 0.19
    assert last["spearman"] < 0.1 and last["spearman"] < first["spearman"]
    assert last["ssim"] < 0.25 and last["ssim"] < first["ssim"]


def test_evaluate_cli_writes_json_and_a_self_contained_report(tmp_path, capsys):
    import json
    from onnxcam.cli import main
    from conftest import LITE0, PHOTOS
    imgs = [str(PHOTOS / "chelsea.jpg"), str(PHOTOS / "coffee.jpg")]
    args = ["evaluate", str(LITE0), *imgs, "--methods", "gradcam,eigencam", "--boxes",
            str(PHOTOS / "boxes.json"), "--steps", "8", "--sanity", "1", "50", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"gradcam", "eigencam"}
    data = json.loads((tmp_path / "evaluation.json").read_text())
    row = next(iter(data["methods"]["gradcam"]["layers"].values()))
    assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    assert row["pointing_hit_rate"] == 1.0          # the espresso cup and the cat are found
    assert len(row["curves"]["deletion"][0]) == 9
    assert row["road_morf"] < row["road_lerf"] and len(row["curves"]["road_morf"][0]) == 5
    sanity = data["methods"]["gradcam"]["sanity"]
    assert [r["randomized_layers"] for r in sanity] == [1, 50] and sanity[1]["spearman"] < sanity[0]["spearman"]
    page = (tmp_path / "report.html").read_text()
    assert "Sanity check" in page
    assert page.count("data:image/png;base64,") == 2 * 3 and "<svg" in page and "<script" not in page
    assert (tmp_path / "report.html").stat().st_mode & 0o044   # readable by others, like any output
    assert main(args) == 2 and "already exists" in capsys.readouterr().err


def test_boxes_file_errors_are_one_line(tmp_path):
    from onnxcam.evaluate import read_boxes
    bad = tmp_path / "b.json"
    bad.write_text('{"boxes": {"a.jpg": [[0.5, 0.5, 0.2, 0.9]]}}')
    with pytest.raises(onnxcam.OnnxCamError, match="bad box"):
        read_boxes(bad)
    with pytest.raises(onnxcam.OnnxCamError, match="cannot read boxes"):
        read_boxes(tmp_path / "missing.json")


def test_view_box_follows_the_preprocessing():
    from onnxcam.preprocess import PreprocessSpec, view_box
    assert view_box((0.5, 0.25, 1.0, 0.75), (200, 400), PreprocessSpec(size=(100, 100))) == (50, 25, 100, 75)
    crop = PreprocessSpec(size=(224, 224), resize="center_crop")
    x0, y0, x1, y1 = view_box((0.0, 0.0, 1.0, 1.0), (256, 512), crop)
    assert x0 < 0 and x1 > 224 and y0 == pytest.approx(-16) and y1 == pytest.approx(240)


def test_road_imputation_solves_the_neighbour_system_exactly():
    from onnxcam.metrics.road import impute
    rng = np.random.default_rng(0)
    h, w = 9, 11
    img = rng.normal(size=(2, h, w))
    removed = rng.uniform(size=(h, w)) < 0.5
    got = impute(img, removed, noise=0.0)
    # the same system written out densely: W_i v_i - sum_{removed j} w_ij v_j = sum_{known k} w_ik x_k
    idx = {p: n for n, p in enumerate(zip(*np.nonzero(removed)))}
    offsets = [(-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12)]
    for c in range(2):
        a = np.zeros((len(idx), len(idx)))
        b = np.zeros(len(idx))
        for (y, x), n in idx.items():
            for dy, dx, wgt in offsets:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    a[n, n] += wgt
                    if removed[yy, xx]:
                        a[n, idx[(yy, xx)]] -= wgt
                    else:
                        b[n] += wgt * img[c, yy, xx]
        a += 1e-8 * np.eye(len(idx))
        v = np.linalg.solve(a, b)
        np.testing.assert_allclose([got[c][p] for p in idx], v, atol=1e-6)
        np.testing.assert_array_equal(got[c][~removed], img[c][~removed])


def test_road_morf_falls_faster_for_a_faithful_map(lite0):
    from onnxcam.metrics import road
    x = onnxcam.load_images(cat_and_coffee(), lite0.preprocess)
    res = lite0.explain(x, method="gradcam")
    maps = next(iter(res.maps.values()))
    good = road(lite0, x, maps, res.target, percentages=(20, 50, 80))
    bad = road(lite0, x, 1.0 - maps, res.target, percentages=(20, 50, 80))
    assert good["mean"] < bad["mean"]
    lerf = road(lite0, x, maps, res.target, percentages=(20, 50, 80), order="lerf")
    assert lerf["mean"] > good["mean"]
    assert len(good["curves"]) == 2 and len(good["curves"][0]) == 3


def test_probabilities_follow_the_final_activation():
    """Multi-label models (final Sigmoid) get sigmoid probabilities in metrics and reports."""
    x = random_images(2, (3, 32, 32), seed=3)
    for final, expect in (("Sigmoid", lambda s: 1 / (1 + np.exp(-s))),
                          ("Softmax", lambda s: np.exp(s) / np.exp(s).sum(1, keepdims=True))):
        ex = onnxcam.Explainer(small_cnn(final=final))
        scores, _ = ex.forward(x)
        np.testing.assert_allclose(ex.probabilities(scores), expect(scores.astype(np.float64)), rtol=1e-6)
        out = onnxcam.Explainer(small_cnn(final=final), score="output")   # scores are probabilities
        probs, _ = out.forward(x)
        np.testing.assert_allclose(out.probabilities(probs), expect(scores.astype(np.float64)), rtol=1e-5)


def test_randomized_copies_keep_the_explainer_settings():
    """The sanity check's randomized models explain the same score as the original
    (score="output" must not silently become the logits under the Softmax)."""
    ex = onnxcam.Explainer(small_cnn(final="Softmax"), score="output", max_batch=3)
    copy = ex.derived(ex.model.proto)
    assert copy.model.score_name == ex.model.score_name == ex.model.output_name
    assert (copy.max_batch, copy.preprocess, copy.providers) == (3, ex.preprocess, ex.providers)
