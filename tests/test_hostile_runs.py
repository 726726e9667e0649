"""What onnxcam writes, runs and reports under hostile conditions (issue 10, item 4): every failure is
one `onnxcam: error:` line with exit 2 (Ctrl-C: 130), no temporary file is left behind, onnxruntime's
failures are said in words, NaN/inf never leaves silently, and every run option is checked.

All on small onnx.helper models (tests/nets.py) and 32x32 images: each test runs in about a second.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import warnings

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam import OnnxCamError, engine, progress
from onnxcam.cli import main
from onnxcam.compare import compare
from onnxcam.errors import first_line
from onnxcam.evaluate import evaluate
from onnxcam.metrics import cascading_randomization, deletion_insertion, pointing_game, road
from onnxcam.output import unique_paths
from nets import small_cnn


# ----- fixtures and helpers

@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(small_cnn(), str(path))
    return path


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return path


def cli_error(capsys, argv, code=2, match=None) -> str:
    """Run the CLI; assert the exit code and that stderr is exactly one `onnxcam: ...` line."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("onnxcam: error: " if code == 2 else "onnxcam: "), err
    assert "Traceback" not in err and "/onnxruntime_src" not in err
    if match:
        assert match in lines[0], lines[0]
    return lines[0]


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")] if folder.exists() else []


def with_weight(model: onnx.ModelProto, name: str, value: float) -> onnx.ModelProto:
    w = next(t for t in model.graph.initializer if t.name == name)
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] = value
    w.CopyFrom(numpy_helper.from_array(arr, name))
    return model


def renamed(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    return model


# ----- output errors: one line naming the path, the cause and the fix; no temporary file left

def test_out_is_an_existing_file(capsys, model_path, image, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    line = cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", blocker],
                     match="is a file, not a folder")
    assert str(blocker) in line and blocker.read_text() == "keep me"


def test_out_below_a_file_and_in_proc(capsys, model_path, image, tmp_path):
    (tmp_path / "f").write_text("x")
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", tmp_path / "f" / "sub"],
              match="is a file, not a folder")
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", "/proc/onnxcam-out"],
              match="cannot")


def test_out_name_too_long(capsys, model_path, image, tmp_path):
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", tmp_path / ("a" * 300)],
              match="longer than the 255 bytes")


def test_a_folder_where_a_file_goes(capsys, model_path, image, tmp_path):
    out = tmp_path / "o"
    (out / "img_gradcam.npz").mkdir(parents=True)
    line = cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", out, "--overwrite"],
                     match="a folder of that name is in the way")
    assert "img_gradcam.npz" in line and leftovers(out) == []


def test_read_only_folder(capsys, model_path, image, tmp_path, monkeypatch):
    # tests may run as root, for whom chmod 0555 stops nothing: the refusal is simulated
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))
    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "o"
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", out],
              match="permission denied; choose a folder you can write to (Permission denied)")
    assert leftovers(out) == []


def test_disk_full(capsys, model_path, image, tmp_path, monkeypatch):
    real_write = os.write

    def full(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)
    monkeypatch.setattr(os, "write", full)
    out = tmp_path / "o"
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", out],
              match="the disk is full; free some space")
    assert leftovers(out) == [] and not any(out.iterdir())


def test_ctrl_c_exits_130_and_leaves_no_temporary_file(capsys, model_path, image, tmp_path, monkeypatch):
    def interrupt(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupt)
    out = tmp_path / "o"
    cli_error(capsys, ["explain", model_path, image, "--method", "gradcam", "--out", out], code=130,
              match="interrupted")
    assert leftovers(out) == []


def test_an_unexpected_exception_is_one_line_and_its_traceback_on_request(capsys, model_path, image,
                                                                         tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ValueError("something odd\nsecond line")
    monkeypatch.setattr("onnxcam.cli.run_explain", bug)
    argv = ["explain", model_path, image, "--out", tmp_path / "o"]
    line = cli_error(capsys, argv, match="internal error: ValueError: something odd (set ONNXCAM_DEBUG=1")
    assert "second line" not in line
    monkeypatch.setenv("ONNXCAM_DEBUG", "1")
    assert main([str(a) for a in argv]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_error_quoting_several_lines_is_printed_as_one(capsys, model_path, image, tmp_path, monkeypatch):
    def quoting(*args, **kwargs):
        raise OnnxCamError("cannot read x: the library said\nline two\n")
    monkeypatch.setattr("onnxcam.cli.run_explain", quoting)
    cli_error(capsys, ["explain", model_path, image, "--out", tmp_path / "o"],
              match="the library said line two")


def test_argparse_refusals_are_one_line(capsys, model_path, image, tmp_path):
    cli_error(capsys, ["explain", model_path, image, "--out", tmp_path / "o", "--size", "x", "1"],
              match="invalid int value")


# ----- onnxruntime failures in words

def reshape_model() -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([1, 7], np.int64), "s")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="my/reshape")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_failed_run_names_the_graph_and_node_without_source_paths():
    sess = engine.Session(reshape_model(), [engine.CPU], label="forward")
    with pytest.raises(OnnxCamError) as info:
        sess.run({"x": np.ones((2, 3), np.float32)})
    text = str(info.value)
    assert text.startswith("onnxruntime failed running the forward graph at node 'my/reshape' (Reshape); ")
    assert "cannot be reshaped" in text and "Input shape:{2,3}" in text   # onnxruntime's words, after ours
    assert "onnxruntime_src" not in text and "::" not in text and "\n" not in text


def test_a_graph_onnxruntime_cannot_build_is_one_readable_line():
    graph = helper.make_graph([helper.make_node("Conv", ["x"], ["y"], name="c")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxCamError) as info:
        engine.Session(model, [engine.CPU], label="gradient/relevance")
    text = str(info.value)
    assert text.startswith("onnxruntime cannot build the gradient/relevance graph of this model; ")
    assert "[ONNXRuntimeError]" not in text and "\n" not in text and "has input size 1" in text


def test_first_line_reads_onnxruntime_messages():
    raw = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv "
           "node. Name:'/stem/Conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 "
           "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) "
           "Failed to allocate memory for requested buffer of size 123\n")
    assert first_line(RuntimeError(raw)) == ("node '/stem/Conv' (Conv): Failed to allocate memory for "
                                             "requested buffer of size 123")
    load = ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/"
            "graph/model.cc:180 onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&) "
            "Unsupported model IR version: 11, max supported IR version: 10")
    assert first_line(RuntimeError(load)) == ("Load model from m.onnx failed: Unsupported model IR version: 11, "
                                              "max supported IR version: 10")
    assert first_line(ValueError("x" * 500)).endswith("...") and len(first_line(ValueError("x" * 500))) == 300
    assert first_line(ValueError()) == "ValueError"


# ----- NaN / inf: refused where onnxruntime returns them, naming the first non-finite tensor

def test_nan_weights_are_refused_naming_the_first_non_finite_tensor(tmp_path):
    ex = onnxcam.Explainer(with_weight(small_cnn(), "w2", np.nan))
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with pytest.raises(OnnxCamError, match=r"NaN or infinite values: activations of layer feat \(image 0"):
        ex.explain(x, method="gradcam", layers="feat")
    with pytest.raises(OnnxCamError, match="NaN or infinite values: the scores"):
        ex.forward(x)
    with pytest.raises(OnnxCamError, match="activations of layer conv2 "):   # w2's output (LRP reads the cuts)
        ex.explain(x, method="lrp")


def test_finite_input_that_overflows_is_refused(capsys, tmp_path, image):
    model = small_cnn()
    w = next(t for t in model.graph.initializer if t.name == "wf")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(1e38), "wf"))
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "o"
    with warnings.catch_warnings():   # a numpy warning would be a second stderr line outside pytest
        warnings.simplefilter("error", RuntimeWarning)
        cli_error(capsys, ["explain", path, image, "--method", "gradcam", "--out", out], match="the scores")
    assert not out.exists()


def test_finite_values_whose_sum_overflows_pass_the_finite_check_silently():
    """The finite check sums each output first; a sum that overflows on finite values (here ~1e36
    each) goes on to the exact per-image check, which passes them, without a numpy warning."""
    model = small_cnn()
    for name in ("w2", "b2"):
        t = next(t for t in model.graph.initializer if t.name == name)
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(1e35), name))
    ex = onnxcam.Explainer(model, progress=False)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error", RuntimeWarning)
        _, acts = ex.forward(x, ["feat"])
    with np.errstate(over="ignore"):
        assert np.isfinite(acts["feat"]).all() and not np.isfinite(acts["feat"].sum(dtype=np.float32))


def test_a_constant_map_is_fine():
    model = small_cnn()
    for name in ("w2", "b2"):   # 'feat' is ReLU(-1) = 0 everywhere: constant maps, finite numbers
        w = next(t for t in model.graph.initializer if t.name == name)
        arr = np.full_like(numpy_helper.to_array(w), -1.0 if name == "b2" else 0.0)
        w.CopyFrom(numpy_helper.from_array(arr, name))
    ex = onnxcam.Explainer(model)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    res = ex.explain(x, method="gradcam", layers="feat")
    assert np.array_equal(res.maps["feat"], np.zeros((2, 32, 32), np.float32))
    di = deletion_insertion(ex, x, res.maps["feat"], res.target, steps=2)
    assert np.isfinite(di["deletion"]).all()


def test_compare_scores_a_non_finite_candidate_as_no_agreement(tmp_path, image):
    ref, cand = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(small_cnn(), str(ref))
    onnx.save(with_weight(small_cnn(), "w2", np.inf), str(cand))
    out = compare(ref, cand, [image], method="gradcam", fail_under=0.5)
    json.dumps(out, allow_nan=False)
    assert out["passed"] is False and any("not finite" in n for n in out["notes"])
    with pytest.raises(OnnxCamError, match="NaN or infinite"):   # the reference must be finite
        compare(cand, ref, [image], method="gradcam")


def test_metrics_refuse_non_finite_maps():
    ex = onnxcam.Explainer(small_cnn())
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    nan_maps = np.full((2, 32, 32), np.nan, np.float32)
    for fn in (lambda m: deletion_insertion(ex, x, m, [0, 1], steps=2),
               lambda m: road(ex, x, m, [0, 1], (50,)),
               lambda m: onnxcam.metrics.average_drop_increase(ex, x, m, [0, 1]),
               lambda m: pointing_game(m, boxes=[[(0, 0, 4, 4)]] * 2)):
        with pytest.raises(OnnxCamError, match="NaN or infinite"):
            fn(nan_maps)
        one_inf = np.zeros((2, 32, 32), np.float32)
        one_inf[1, 3, 3] = np.inf
        with pytest.raises(OnnxCamError, match="map 1 contains"):
            fn(one_inf)
    with pytest.raises(OnnxCamError, match="one map per image"):
        deletion_insertion(ex, x, np.zeros((1, 32, 32)), [0, 1], steps=2)


# ----- run options: checked in the API, refused in one line by the CLI

def test_top_k_must_be_positive(capsys, model_path, image, tmp_path):
    for bad in ("0", "-1"):
        cli_error(capsys, ["explain", model_path, image, "--top-k", bad, "--out", tmp_path / "o"],
                  match="argument --top-k: expected a whole number >= 1")
    ex = onnxcam.Explainer(small_cnn())
    x = np.zeros((1, 3, 32, 32), np.float32)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(OnnxCamError, match="top_k"):
            ex.explain(x, method="scorecam", layers="feat", top_k=bad)
    assert ex.explain(x, method="scorecam", layers="feat", top_k=3).maps["feat"].shape == (1, 32, 32)


def test_engine_limits(capsys, model_path, image, tmp_path):
    for flag, bad in (("--max-batch", "0"), ("--memory-budget-mb", "nan"), ("--memory-budget-mb", "inf"),
                      ("--memory-budget-mb", "0"), ("--memory-budget-mb", "-1")):
        cli_error(capsys, ["explain", model_path, image, flag, bad, "--out", tmp_path / "o"], match=flag)
    for kwargs in ({"max_batch": 0}, {"max_batch": 1.5}, {"memory_budget_mb": math.nan},
                   {"memory_budget_mb": math.inf}, {"memory_budget_mb": 0}, {"memory_budget_mb": -1}):
        with pytest.raises(OnnxCamError, match="must be"):
            onnxcam.Explainer(small_cnn(), **kwargs)


def test_evaluate_options(capsys, model_path, image, tmp_path):
    out = tmp_path / "o"
    cli_error(capsys, ["evaluate", model_path, image, "--methods", "", "--out", out], match="no method")
    cli_error(capsys, ["evaluate", model_path, image, "--methods", "gradcam,nope", "--out", out],
              match="unknown method 'nope'")
    cli_error(capsys, ["evaluate", model_path, image, "--sanity", "-1", "--out", out], match="--sanity")
    cli_error(capsys, ["evaluate", model_path, image, "--steps", "0", "--out", out], match="--steps")
    assert not out.exists()
    ex = onnxcam.Explainer(small_cnn())
    with pytest.raises(OnnxCamError, match="no method"):
        evaluate(ex, [image], methods=[])
    with pytest.raises(OnnxCamError, match="whole numbers from 1 to 3 .* got -1"):
        evaluate(ex, [image], methods=["gradcam"], sanity_steps=[-1])
    with pytest.raises(OnnxCamError, match="got 4"):   # conv1, conv2, fc
        evaluate(ex, [image], methods=["gradcam"], sanity_steps=[1, 4])
    with pytest.raises(OnnxCamError, match="got 0"):
        cascading_randomization(ex, np.zeros((1, 3, 32, 32), np.float32), "gradcam", steps=[0])


def test_compare_options(capsys, model_path, image, tmp_path):
    out = tmp_path / "o"
    for flag, bad in (("--fail-under", "nan"), ("--top-percent", "nan")):
        cli_error(capsys, ["compare", model_path, model_path, image, flag, bad, "--out", out], match=flag)
    for bad in ("0", "101"):
        cli_error(capsys, ["compare", model_path, model_path, image, "--top-percent", bad, "--out", out],
                  match="top_percent must be in (0, 100]")
    cli_error(capsys, ["compare", model_path, model_path, image, "--fail-under", "2", "--out", out],
              match="[-1, 1]")
    for bad in (math.nan, math.inf, "0.5"):
        with pytest.raises(OnnxCamError, match="fail_under"):
            compare(model_path, model_path, [image], fail_under=bad)
    for flag in ("--top1-floor", "--map-floor"):
        cli_error(capsys, ["compare", model_path, model_path, image, flag, "nan", "--out", out], match=flag)
    for bad in ("-0.01", "1.5"):
        cli_error(capsys, ["compare", model_path, model_path, image, "--top1-floor", bad, "--out", out],
                  match="top1_floor (--top1-floor) must be a fraction of the images in [0, 1]")
    for bad in (math.nan, -math.inf, 2, True, "0.9"):
        with pytest.raises(OnnxCamError, match="top1_floor"):
            compare(model_path, model_path, [image], top1_floor=bad)
    with pytest.raises(OnnxCamError, match="its own floor"):
        compare(model_path, model_path, [image], gate="top1")


# ----- file names: two layers never share one

def test_layers_whose_safe_names_collide_get_distinct_files(capsys, tmp_path, image):
    model = renamed(renamed(small_cnn(), "relu1", "blk/act"), "feat", "blk_act")
    path = tmp_path / "collide.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "o"
    argv = ["explain", path, image, "--method", "gradcam", "--layer", "blk/act", "blk_act", "--out", out, "--json"]
    assert main([str(a) for a in argv]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert len(files) == len(set(files)) == 4 and all(os.path.exists(f) for f in files)
    assert main([str(a) for a in argv + ["--overwrite"]]) == 0   # the same names on every run
    assert json.loads(capsys.readouterr().out)["files"] == files


def test_unique_paths_only_renames_collisions(tmp_path):
    a, b = tmp_path / "x_a_b.png", tmp_path / "x_c.png"
    assert unique_paths([(a, "a/b"), (b, "c")]) == [a, b]
    first, second, third = unique_paths([(a, "a/b"), (tmp_path / "X_A_B.png", "A_B"), (b, "c")])
    assert len({first.name.casefold(), second.name.casefold()}) == 2 and third == b
    assert first.name.startswith("x_a_b-") and first.suffix == ".png"


# ----- progress off a terminal

def test_progress_off_a_terminal_writes_status_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "STATUS_INTERVAL", 0.0)
    bar = progress.Progress(3, "Score-CAM forwards", stream=stream)
    for _ in range(3):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("onnxcam: Score-CAM forwards 3/3") and "\r" not in stream.getvalue()
    quiet = io.StringIO()
    monkeypatch.setattr(progress, "STATUS_INTERVAL", 3600.0)
    bar = progress.Progress(3, "fast", stream=quiet)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""   # a fast run prints nothing


def test_cli_progress_goes_to_stderr_even_with_json(capsys, model_path, image, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "STATUS_INTERVAL", 0.0)
    assert main(["explain", str(model_path), str(image), "--method", "scorecam", "--out", str(tmp_path / "o"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["method"] == "scorecam"
    assert "onnxcam: Score-CAM forwards" in captured.err


def test_many_short_bars_still_report_every_interval(monkeypatch):
    """`--layer all` with Score-CAM: one short bar per image and layer, minutes in all."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(progress, "_last_status", None)
    stream = io.StringIO()
    for _ in range(30):   # 30 bars of 2 updates, 1 s each: 30 s
        bar = progress.Progress(2, "Score-CAM forwards", stream=stream)
        for _ in range(2):
            now[0] += 0.5
            bar.update()
        bar.close()
    assert len(stream.getvalue().splitlines()) == 3   # at 10, 20 and 30 s
