"""Every bad input gets one OnnxCamError line that says what and how to fix it (issue 2)."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

import onnxcam
from onnxcam import OnnxCamError, intake
from conftest import LITE0, random_images
from nets import small_cnn


def one_line_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(OnnxCamError, match=match) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
    return text


def save_external(tmp_path, location_rewrite=None):
    model = small_cnn()
    folder = tmp_path / "m"
    folder.mkdir()
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin",
                                   size_threshold=0)
    onnx.save_model(model, str(folder / "model.onnx"))
    if location_rewrite:
        m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location_rewrite
        onnx.save_model(m, str(folder / "model.onnx"))
    return folder


def test_external_data_inside_the_folder_loads(tmp_path):
    folder = save_external(tmp_path)
    m = intake.load(folder / "model.onnx")
    assert m.auto_layer.name == "feat"


def test_missing_file(tmp_path):
    one_line_error(intake.load, tmp_path / "nope.onnx", match="model file not found")


def test_directory_instead_of_file(tmp_path):
    one_line_error(intake.load, tmp_path, match="not a file")


def test_not_onnx(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a model\n" * 20)
    one_line_error(intake.load, p, match="not a readable ONNX model|not an ONNX model")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    one_line_error(intake.load, p, match="is empty")


def test_truncated_protobuf(tmp_path):
    p = tmp_path / "cut.onnx"
    p.write_bytes(LITE0.read_bytes()[: 3_000_000])
    one_line_error(intake.load, p, match="truncated or not ONNX")


def test_external_data_missing(tmp_path):
    folder = save_external(tmp_path)
    (folder / "weights.bin").unlink()
    one_line_error(intake.load, folder / "model.onnx", match="missing: copy it next to")


def test_external_data_truncated(tmp_path):
    folder = save_external(tmp_path)
    data = (folder / "weights.bin").read_bytes()
    (folder / "weights.bin").write_bytes(data[: len(data) // 2])
    one_line_error(intake.load, folder / "model.onnx", match="shorter than the model says")


def test_external_data_absolute_path(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 100000)
    folder = save_external(tmp_path, location_rewrite=str(secret))
    one_line_error(intake.load, folder / "model.onnx", match="absolute path")


def test_external_data_dotdot(tmp_path):
    folder = save_external(tmp_path, location_rewrite="../m/weights.bin")
    one_line_error(intake.load, folder / "model.onnx", match=r"contains '\.\.'")


def test_external_data_symlink_out_of_folder(tmp_path):
    folder = save_external(tmp_path)
    outside = tmp_path / "outside.bin"
    os.replace(folder / "weights.bin", outside)
    os.symlink(outside, folder / "weights.bin")
    one_line_error(intake.load, folder / "model.onnx", match="link that leads outside")


def test_no_image_like_input():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 20])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    w = numpy_helper.from_array(np.ones((20, 5), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp", [x], [y], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    one_line_error(intake.load, model, match="no image-like input")


def test_dynamic_image_size_needs_a_size():
    model = small_cnn()
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.Clear()
        d.dim_param = "H"
    one_line_error(intake.load, model, match="dynamic height/width")
    assert intake.load(model, image_size=(32, 32)).image_shape == (3, 32, 32)


def test_unknown_layer_lists_close_matches():
    ex = onnxcam.Explainer(small_cnn())
    text = one_line_error(ex.explain, random_images(1, (3, 32, 32)), method="eigencam",
                          layers="feet", match="unknown layer 'feet'")
    assert "feat" in text


@pytest.mark.parametrize("target", [10, -1, [1, 99]])
def test_target_out_of_range(target):
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(2, (3, 32, 32))
    one_line_error(ex.explain, x, method="eigencam", target=target, match="out of range")


def test_wrong_number_of_targets():
    ex = onnxcam.Explainer(small_cnn())
    one_line_error(ex.explain, random_images(3, (3, 32, 32)), method="cam", target=[1, 2],
                   match="got 2 targets for 3 images")


def test_wrong_input_shape_and_nan():
    ex = onnxcam.Explainer(small_cnn())
    one_line_error(ex.explain, random_images(1, (3, 16, 16)), match="the model wants")
    x = random_images(1, (3, 32, 32))
    x[0, 0, 0, 0] = np.nan
    one_line_error(ex.explain, x, match="NaN")


def test_unknown_method_and_option():
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(1, (3, 32, 32))
    one_line_error(ex.explain, x, method="magic", match="unknown method 'magic'")
    one_line_error(ex.explain, x, method="eigencam", top_k=3, match="takes no option")


def test_unreadable_images(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"GIF89a not really an image")
    spec = onnxcam.PreprocessSpec()
    one_line_error(onnxcam.load_images, [bad], spec, match="cannot read image")
    one_line_error(onnxcam.load_images, [tmp_path / "missing.png"], spec, match="image not found")


def test_cam_refuses_a_head_that_is_not_gap_fc():
    ex = onnxcam.Explainer(small_cnn(head="flatten"))
    one_line_error(ex.explain, random_images(1, (3, 32, 32)), method="cam",
                   match="CAM needs a GAP -> fully-connected head")
