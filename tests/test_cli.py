"""The command line: layers, explain; no overwriting; one-line errors; --json (the demo and the
pictures: tests/test_pictures.py)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxcam.cli import main
from conftest import LITE0, PADDLE_CLS, photo_paths
from nets import small_cnn


def test_layers_table_and_json(capsys):
    assert main(["layers", str(LITE0)]) == 0
    out = capsys.readouterr().out
    assert "<- auto" in out and "1280x7x7" in out
    assert main(["layers", str(LITE0), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    auto = [r for r in rows if r["auto"]]
    assert len(auto) == 1 and auto[0]["shape"] == [1280, 7, 7]


def test_explain_json_and_no_overwrite(tmp_path, capsys):
    imgs = [str(p) for p in photo_paths(2)]
    args = ["explain", str(LITE0), *imgs, "--method", "eigencam", "--out", str(tmp_path / "o"), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "eigencam" and len(summary["images"]) == 2
    assert summary["provider"] == "CPUExecutionProvider"
    before = {p: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    assert len(before) == 4
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before
    assert main(args + ["--overwrite"]) == 0


def test_explain_target_layers_and_preprocess_flags(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(), str(model))
    img = str(photo_paths(1)[0])
    rc = main(["explain", str(model), img, "--method", "scorecam", "--layer", "feat", "pool1",
               "--target", "3", "--size", "32", "32", "--channel-order", "BGR",
               "--out", str(tmp_path / "o"), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == ["feat", "pool1"] and summary["images"][0]["target"] == 3
    npz = np.load(tmp_path / "o" / f"{photo_paths(1)[0].stem}_scorecam.npz")
    assert npz["raw_0"].shape == (16, 16) and npz["raw_1"].shape == (16, 16)
    assert npz["map_0"].shape == (32, 32)


def test_explain_errors_are_one_line(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    cases = [
        (["explain", str(tmp_path / "none.onnx"), img, "--out", str(tmp_path)], "model file not found"),
        (["explain", str(LITE0), str(tmp_path / "x.png"), "--out", str(tmp_path)], "image not found"),
        (["explain", str(LITE0), img, "--target", "1000", "--method", "cam", "--out", str(tmp_path)],
         "out of range"),
        (["explain", str(LITE0), img, "--layer", "nope", "--out", str(tmp_path)], "unknown layer"),
        (["explain", str(LITE0), img, "--target", "cat", "--out", str(tmp_path)], "--target takes"),
    ]
    for args, msg in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_explain_paddle_classifier_from_its_manifest(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    rc = main(["explain", str(PADDLE_CLS), img, "--method", "scorecam", "--out", str(tmp_path), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"][0]["target_name"] in ("0", "180")


def test_explain_all_layers_writes_a_grid_and_guided_methods_write_pixels(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    stem = photo_paths(1)[0].stem
    assert main(["explain", str(LITE0), img, "--method", "gradcam", "--layer", "all",
                 "--out", str(tmp_path)]) == 0
    grid = tmp_path / f"{stem}_gradcam_grid.png"
    assert grid.exists() and grid.stat().st_size > 10000
    assert main(["explain", str(LITE0), img, "--method", "guided-gradcam", "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob(f"{stem}_guided-gradcam_*_pixels.png"))) == 1
    npz = np.load(tmp_path / f"{stem}_guided-gradcam.npz")
    assert npz["pixels_0"].shape == (3, 224, 224)


def test_relevance_methods_from_the_cli(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    stem = photo_paths(1)[0].stem
    assert main(["explain", str(LITE0), img, "--method", "relevancecam", "--layer", "all",
                 "--out", str(tmp_path / "rc")]) == 0
    assert (tmp_path / "rc" / f"{stem}_relevancecam_grid.png").exists()
    capsys.readouterr()
    assert main(["explain", str(LITE0), img, "--method", "lrp", "--composite", "epsilon-gamma-box",
                 "--out", str(tmp_path / "lrp"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == ["input"]
    assert main(["explain", str(LITE0), img, "--method", "srmap", "--out", str(tmp_path / "sr")]) == 0
    assert main(["explain", str(LITE0), img, "--method", "lrp", "--composite", "nope",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "unknown composite" in capsys.readouterr().err


# ----- targets by name, --labels, --version, defaults in --help (issue 12, item 6)

def test_version_and_help_show_defaults(capsys):
    from onnxcam.cli import installed_version
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"onnxcam {installed_version()}"
    assert main(["explain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: hirescam)" in text and "(default: auto)" in text and "(default: 1024)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_target_by_class_name_is_case_insensitive_and_default_method_is_hirescam(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    args = ["explain", str(LITE0), img, "--target", "egyptian CAT", "--out", str(tmp_path / "o"), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "hirescam"
    assert summary["images"][0]["target"] == 285 and summary["images"][0]["target_name"] == "Egyptian cat"


def test_unknown_class_name_lists_the_closest(tmp_path, capsys):
    img = str(photo_paths(1)[0])
    assert main(["explain", str(LITE0), img, "--target", "Egyptian kat", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target takes" in err and "closest: 'Egyptian cat'" in err


def test_labels_file_names_the_classes_and_must_match_their_count(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(), str(model))
    img = str(photo_paths(1)[0])
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"thing {k}" for k in range(10)) + "\n")
    assert main(["explain", str(model), img, img, "--size", "32", "32", "--labels", str(labels),
                 "--target", "Thing 7,3", "--out", str(tmp_path / "o"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["images"]
    assert [(r["target"], r["target_name"]) for r in rows] == [(7, "thing 7"), (3, "thing 3")]
    labels.write_text("a\nb\n")
    assert main(["explain", str(model), img, "--size", "32", "32", "--labels", str(labels),
                 "--out", str(tmp_path / "p")]) == 2
    assert "has 2 names for 10 classes" in capsys.readouterr().err
    # without labels, a name cannot be looked up: say how to give them
    assert main(["explain", str(model), img, "--size", "32", "32", "--target", "thing 7",
                 "--out", str(tmp_path / "q")]) == 2
    assert "--labels FILE" in capsys.readouterr().err
    assert main(["explain", str(model), img, "--size", "32", "32", "--labels", str(tmp_path / "none.txt"),
                 "--out", str(tmp_path / "q")]) == 2
    assert "not found" in capsys.readouterr().err
