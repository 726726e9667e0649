"""Hostile files and values get one OnnxCamError line (exit 2): nothing hangs, nothing is read
from outside the model's folder, nothing is read unbounded, nothing crashes the process (issue 10).

Models are built with onnx.helper (tests/nets.py); every test runs in well under a second except
the two that start a child Python process.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxcam
from onnxcam import OnnxCamError, intake
from onnxcam.cli import main
from onnxcam.evaluate import read_boxes
from onnxcam.image_header import image_size
from onnxcam.intake import canonical
from onnxcam.preprocess import PreprocessSpec, read_rgb, spec_from_dict
from conftest import MODELS, ROOT, random_images
from nets import small_cnn
from test_errors import one_line_error, save_external

CLASSES = 10  # small_cnn's


@contextmanager
def deadline(seconds: int = 10):
    """Fail instead of hanging (a FIFO that blocks open() would otherwise stall the suite)."""
    def expired(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def model_folder(tmp_path, sidecar=None, labels_text=None) -> Path:
    """small_cnn saved as tmp/m/model.onnx, with an optional sidecar (dict or raw bytes) and labels."""
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    onnx.save_model(small_cnn(), str(folder / "model.onnx"))
    if sidecar is not None:
        raw = sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode()
        (folder / "model.onnx.json").write_bytes(raw)
    if labels_text is not None:
        (folder / "labels.txt").write_text(labels_text)
    return folder / "model.onnx"


def cli_error(capsys, argv) -> str:
    """Run the CLI; it must exit 2 with exactly one `onnxcam: error:` line."""
    with deadline():
        code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("onnxcam: error: ") and "\n" not in err, err
    return err


# ----- escape: paths a sidecar names stay inside the model's folder

def test_sidecar_labels_inside_the_folder_are_read(tmp_path):
    names = [f"class {k}" for k in range(CLASSES)]
    path = model_folder(tmp_path, {"labels": "labels.txt"}, "\n".join(names))
    assert onnxcam.Explainer(path).labels == names


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_sidecar_labels_outside_the_folder_are_refused(tmp_path, where):
    secret = tmp_path / "secret.txt"
    secret.write_text("\n".join(f"secret {k}" for k in range(CLASSES)))
    name = {"absolute": str(secret), "dotdot": "../secret.txt", "symlink": "labels.txt"}[where]
    path = model_folder(tmp_path, {"labels": name})
    if where == "symlink":
        os.symlink(secret, path.parent / "labels.txt")
    match = {"absolute": "absolute path", "dotdot": r"contains '\.\.'", "symlink": "leads outside"}[where]
    text = one_line_error(onnxcam.Explainer, path, match=match)
    assert "labels" in text


@pytest.mark.parametrize("name", [["a.txt"], 7, "lab\0els.txt", "missing.txt"])
def test_sidecar_labels_that_name_no_file(tmp_path, name):
    one_line_error(onnxcam.Explainer, model_folder(tmp_path, {"labels": name}),
                   match="names no file|NUL|missing")


# ----- only regular files, each with a size cap

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_never_blocks(tmp_path, capsys):
    path = model_folder(tmp_path, {"labels": "labels.txt"})
    os.mkfifo(path.parent / "labels.txt")
    with deadline():
        one_line_error(onnxcam.Explainer, path, match="not a regular file")
    fifo = tmp_path / "pre.json"
    os.mkfifo(fifo)
    assert "not a regular file" in cli_error(capsys, ["explain", path, "x.jpg", "--out", tmp_path / "o",
                                                      "--preprocess", fifo])
    with deadline():
        one_line_error(intake.load, fifo, match="not a regular file")
        one_line_error(read_rgb, fifo, match="not a regular file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_dev_zero_is_not_read(tmp_path, capsys):
    path = model_folder(tmp_path)
    err = cli_error(capsys, ["explain", path, "x.jpg", "--out", tmp_path / "o", "--preprocess", "/dev/zero"])
    assert "not a regular file" in err
    with deadline():
        one_line_error(read_rgb, "/dev/zero", match="not a regular file")
        one_line_error(intake.load, "/dev/zero", match="not a regular file")


def test_files_over_the_size_cap_are_refused_before_reading(tmp_path):
    path = model_folder(tmp_path, {"labels": "labels.txt"})
    with open(path.parent / "labels.txt", "wb") as f:  # sparse: costs no disk or memory
        f.truncate(64 << 20)
    one_line_error(onnxcam.Explainer, path, match="over onnxcam's 4 MiB limit")


def test_non_utf8_labels(tmp_path):
    path = model_folder(tmp_path, {"labels": "labels.txt"})
    (path.parent / "labels.txt").write_bytes(b"\xff\xfe\x00cat\n" * CLASSES)
    one_line_error(onnxcam.Explainer, path, match="not UTF-8")


@pytest.mark.parametrize("raw", [b"[1, 2]", b"null", b"3", b'"text"', b"{not json", b"\xff\xfe",
                                 b"[" * 100000 + b"]" * 100000, b'{"size": 1' + b"0" * 5000 + b"}"])
def test_sidecar_that_is_not_a_json_object(tmp_path, raw):
    one_line_error(onnxcam.Explainer, model_folder(tmp_path, raw),
                   match="not an object|not valid JSON|not UTF-8|too deeply")


@pytest.mark.parametrize("sidecar", [{"size": "big"}, {"size": [32]}, {"input_size": [32.5, 32]},
                                     {"mean": "0.5"}, {"std": [0, 1, 1]}, {"mean": None, "std": [None]},
                                     {"scale": "1/255"}, {"channel_order": ["RGB"]}, {"layout": 4},
                                     {"resize": None, "crop_fraction": "x"}])
def test_sidecar_fields_of_the_wrong_type(tmp_path, sidecar):
    one_line_error(onnxcam.Explainer, model_folder(tmp_path, sidecar),
                   match="must be|must not|did you mean")


def test_boxes_files(tmp_path):
    good = tmp_path / "boxes.json"
    good.write_text(json.dumps({"boxes": {"a.jpg": [[0.1, 0.1, 0.5, 0.6]]}}))
    assert read_boxes(good) == {"a.jpg": [[0.1, 0.1, 0.5, 0.6]]}
    for i, data in enumerate([[], None, {"boxes": []}, {"boxes": {"a.jpg": 3}},
                              {"boxes": {"a.jpg": [["0", 0, 1, 1]]}}, {"boxes": {"a.jpg": [[True, 0, 1, 1]]}},
                              {"boxes": {"a.jpg": [[0.5, 0, 0.1, 1]]}}]):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(json.dumps(data))
        one_line_error(read_boxes, bad, match="boxes")


# ----- a corrupted old-opset model must not take the process down in onnx's version converter

def squeeze_with_a_float_axes(opset: int = 11) -> onnx.ModelProto:
    """Squeeze whose `axes` attribute is a FLOAT instead of INTS: onnx's Squeeze 11 -> 13 adapter
    reads it as ints and dies with SIGSEGV (found by mutating the bundled Paddle classifier)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8])
    node = helper.make_node("Squeeze", ["x"], ["y"], axes=2.5)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_corrupted_old_opset_model_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "corrupt.onnx"
    onnx.save_model(squeeze_with_a_float_axes(), str(path))
    code = ("import sys\nfrom onnxcam import intake, OnnxCamError\n"
            "try:\n    intake.load(sys.argv[1])\nexcept OnnxCamError as exc:\n"
            "    print(exc)\n    sys.exit(2)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    line = done.stdout.strip()
    assert "\n" not in line and "not valid ONNX" in line and "axes" in line, line


def test_a_crash_inside_the_converter_becomes_one_line(monkeypatch):
    monkeypatch.setattr(canonical, "_CONVERT", "import os\nos.abort()\n")
    text = one_line_error(intake.load, small_cnn(opset=13), match="crashed")
    assert "opset 13" in text


def test_old_opset_models_still_upgrade():
    assert intake.load(small_cnn(opset=13)).notes[0] == "upgraded opset 13 -> 17"


# ----- external data offsets and lengths

@pytest.mark.parametrize("key,value", [("offset", "abc"), ("offset", "-5"), ("length", "1e3"),
                                       ("length", "99999999999999999999999"), ("offset", "12.0"),
                                       ("offset", "999999999999")])
def test_external_data_offsets_and_lengths(tmp_path, key, value):
    folder = save_external(tmp_path)
    m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    entries = m.graph.initializer[0].external_data
    found = [e for e in entries if e.key == key]
    entry = found[0] if found else entries.add()
    entry.key, entry.value = key, value
    onnx.save_model(m, str(folder / "model.onnx"))
    one_line_error(intake.load, folder / "model.onnx", match="not a byte count|shorter than")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_external_data_that_is_a_fifo(tmp_path):
    folder = save_external(tmp_path)
    (folder / "weights.bin").unlink()
    os.mkfifo(folder / "weights.bin")
    with deadline():
        one_line_error(intake.load, folder / "model.onnx", match="not a regular file")


# ----- images: pixel cap before decoding, one line for every unreadable file

def encoded(ext: str, w: int = 37, h: int = 23) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    if ext == ".pgm":
        img = img[..., 0]
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_image_size_from_the_header(ext):
    assert image_size(encoded(ext)) == (37, 23)


def test_image_size_of_a_gif_and_of_cut_headers():
    assert image_size(b"GIF89a" + struct.pack("<HH", 37, 23) + b"\0" * 8) == (37, 23)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff"):
        assert image_size(encoded(ext)[:12]) is None
    assert image_size(b"not an image at all") is None


def jpeg_claiming(w: int, h: int) -> bytes:
    """A small real JPEG whose start-of-frame says w x h: it decodes to w*h*3 bytes."""
    data = bytearray(encoded(".jpg", 16, 16))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def png_claiming(w: int, h: int) -> bytes:
    data = bytearray(encoded(".png", 16, 16))
    data[16:24] = struct.pack(">II", w, h)  # the CRC no longer matches; the cap comes first
    return bytes(data)


@pytest.mark.parametrize("make", [jpeg_claiming, png_claiming])
def test_a_small_file_claiming_a_huge_image_is_refused_before_decoding(tmp_path, make):
    p = tmp_path / "bomb.img"
    p.write_bytes(make(30000, 30000))
    assert p.stat().st_size < 2000
    text = one_line_error(read_rgb, p, match="30000x30000 pixels")
    assert "downscale" in text


def test_a_header_over_opencvs_own_limit_is_one_line(tmp_path):
    # PFM is not parsed by image_header: its size is unknown before decoding, so it is refused
    p = tmp_path / "huge.pfm"
    p.write_bytes(b"PF\n40000 40000\n-1.0\n" + b"\0" * 64)
    one_line_error(read_rgb, p, match="cannot read image")


def test_a_sidecar_near_miss_key_is_a_note_and_preprocess_refuses_it(tmp_path):
    """A sidecar is often someone else's manifest (`inputs`, `input_shape`): a near-miss key there
    is ignored and said; what the user hands over as preprocessing is refused."""
    ex = onnxcam.Explainer(model_folder(tmp_path, {"meen": [0.5], "input_shape": [1, 3, 8, 8]}))
    assert any("'meen'" in n and "'mean'" in n for n in ex.model.notes), ex.model.notes
    one_line_error(onnxcam.Explainer, ex.source, preprocess={"meen": [0.5]}, match="did you mean")


def test_importing_onnxcam_leaves_opencvs_pixel_limit_alone():
    code = "import onnxcam, os; print(os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "None", out.stderr[-300:]


def test_unreadable_image_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    one_line_error(read_rgb, empty, match="is empty")
    one_line_error(read_rgb, tmp_path, match="is a directory")
    cut = tmp_path / "cut.png"
    cut.write_bytes(encoded(".png")[:40])
    one_line_error(read_rgb, cut, match="cannot read image")
    one_line_error(read_rgb, tmp_path / "missing.png", match="image not found")


def test_an_elongated_image_is_not_center_cropped_into_gigabytes(tmp_path):
    p = tmp_path / "strip.png"
    p.write_bytes(encoded(".png", 60000, 1))
    spec = PreprocessSpec(resize="center_crop")
    one_line_error(onnxcam.load_images, [p], spec, match="too elongated")


# ----- preprocessing values: checked in PreprocessSpec, so the API and the CLI agree

@pytest.mark.parametrize("fields", [
    {"mean": (0.5, 0.5)}, {"std": (1, 1, 1, 1)}, {"std": (0.0,)}, {"std": (np.nan, 1, 1)},
    {"mean": (np.inf,)}, {"size": (0, 0)}, {"size": (-224, 224)}, {"size": (100000, 224)},
    {"size": (224,)}, {"size": (224.5, 224)}, {"size": (True, 224)}, {"scale": np.nan}, {"scale": 0},
    {"scale": -1.0}, {"crop_fraction": 0}, {"crop_fraction": 1.5}, {"crop_fraction": np.nan},
    {"channel_order": "rgb"}, {"layout": None}, {"resize": ["stretch"]}, {"mean": "abc"}])
def test_bad_preprocessing_values(fields):
    text = one_line_error(PreprocessSpec, **fields, match="must")
    assert str(list(fields)[0]) in text


def test_good_preprocessing_values_are_normalized():
    spec = PreprocessSpec(size=[np.int64(48), 192], mean=0.5, std=np.array([0.5, 0.5, 0.5]), scale=1)
    assert spec.size == (48, 192) and spec.mean == (0.5,) and spec.std == (0.5, 0.5, 0.5)
    assert isinstance(spec.size[0], int) and spec.scale == 1.0
    assert spec == PreprocessSpec(**spec.to_dict())


def test_manifest_metadata_is_ignored_and_near_misses_are_refused():
    for manifest in MODELS.glob("*/manifest.json"):
        spec_from_dict(json.loads(manifest.read_text()))
    for typo in ("meen", "chanel_order", "sizes", "Crop_Fraction"):
        one_line_error(spec_from_dict, {typo: 1}, match="did you mean")
    one_line_error(spec_from_dict, [("mean", 0.5)], match="dict of its fields")


@pytest.mark.parametrize("flags", [["--size", "0", "0"], ["--size", "-3", "32"], ["--size", "99999", "32"],
                                   ["--mean", "0.5", "0.5"], ["--std", "0"], ["--std", "nan"],
                                   ["--scale", "nan"], ["--scale", "0"]])
def test_cli_preprocessing_flags(tmp_path, capsys, flags):
    path = model_folder(tmp_path)
    cli_error(capsys, ["explain", path, "x.jpg", "--out", tmp_path / "o", *flags])


def test_cli_preprocess_file_with_wrong_types(tmp_path, capsys):
    path = model_folder(tmp_path)
    pre = tmp_path / "pre.json"
    for data in ([224, 224], {"size": "224"}, {"mean": {"r": 0.5}}):
        pre.write_text(json.dumps(data))
        cli_error(capsys, ["explain", path, "x.jpg", "--out", tmp_path / "o", "--preprocess", pre])


# ----- API values

@pytest.fixture(scope="module")
def small():
    return onnxcam.Explainer(small_cnn())


@pytest.mark.parametrize("x", [
    random_images(1, (3, 32, 32)).astype(np.complex64), np.full((1, 3, 32, 32), None, object),
    b"photo.jpg", None, np.zeros((0, 3, 32, 32), np.float32), [[1, 2], [3]],
    np.ones((1, 3, 32, 32), bool), np.full((1, 3, 32, 32), 1e39)])
def test_explain_refuses_what_is_not_a_real_batch(small, x):
    one_line_error(small.explain, x, method="gradcam", match="input|explain takes")


@pytest.mark.parametrize("layers,match", [([], "layers is empty"), ((), "layers is empty"),
                                          (5, "layers must be"), ([3], "must be strings"),
                                          ({"feat"}, "layers must be")])
def test_explain_layers(small, layers, match):
    one_line_error(small.explain, random_images(1, (3, 32, 32)), method="gradcam", layers=layers, match=match)


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
@pytest.mark.parametrize("target", [True, "3", [[1]], 1 + 2j, [1, "a"], 10**30])
def test_explain_targets(small, method, target):
    one_line_error(small.explain, random_images(1, (3, 32, 32)), method=method, target=target,
                   match="target")


def test_explain_method_of_the_wrong_type(small):
    one_line_error(small.explain, random_images(1, (3, 32, 32)), method=["gradcam"], match="method must be")


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_batch": True}, {"max_batch": 2.5},
                                    {"memory_budget_mb": np.nan}, {"memory_budget_mb": -1},
                                    {"memory_budget_mb": "1GB"}, {"threads": 0}, {"preprocess": "spec.json"},
                                    {"preprocess": {"size": [16]}}])
def test_explainer_arguments(kwargs):
    one_line_error(onnxcam.Explainer, small_cnn(), **kwargs, match="must")


@pytest.mark.parametrize("model", [None, 3, b"\x08\x07"])
def test_explainer_model_of_the_wrong_type(model):
    one_line_error(onnxcam.Explainer, model, match="model must be")


# ----- property: any JSON-like value for any field is a valid spec or one OnnxCamError line

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=5), max_leaves=10)
field_names = st.sampled_from(["size", "input_size", "mean", "std", "scale", "channel_order", "layout",
                               "resize", "crop_fraction", "labels", "name"])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, json_values, max_size=4))
def test_any_sidecar_values_give_a_spec_or_one_line(data):
    try:
        spec = spec_from_dict(data)
    except OnnxCamError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert len(spec.size) == 2 and all(np.isfinite(spec.mean)) and all(v != 0 for v in spec.std)
    assert 0 < spec.crop_fraction <= 1 and spec.scale > 0


@settings(max_examples=150, deadline=None, derandomize=True)
@given(json_values | st.sampled_from([np.array([1 + 2j]), np.array([[1]]), np.full(10, np.nan),
                                      np.array(["3"]), np.ones((2, 10)), np.array([True, False])]))
def test_any_target_gives_classes_or_one_line(small, target):
    for check in (lambda: small.model.seed_for(target, 2), lambda: small.model.check_targets(target, 2)):
        try:
            check()
        except OnnxCamError as exc:
            assert "\n" not in str(exc)
