"""`Explainer.explain` takes paths, uint8 RGB/BGR arrays, PIL images and preprocessed batches, and
each gives the batch the file would give (onnxcam/inputs.py); wrong kinds are one line."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import onnxcam
from onnxcam.inputs import to_batch
from conftest import photo_paths, random_images
from nets import small_cnn
from test_errors import one_line_error


@pytest.fixture(scope="module")
def small():
    return onnxcam.Explainer(small_cnn())


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 40x24 RGB photo (not the model's 32x32: preprocessing must resize it) and its PNG file."""
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), (5, 5), 1.0)
    path = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb, path


def same(a, b):
    assert a.method == b.method and np.array_equal(a.target, b.target)
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    for layer in a.maps:
        np.testing.assert_allclose(a.maps[layer], b.maps[layer], atol=1e-5)


def test_default_method_is_hirescam(small):
    assert small.explain(random_images(1, (3, 32, 32))).method == "hirescam"


def test_array_path_and_batch_give_the_same_explanation(small, photo):
    rgb, path = photo
    batch = onnxcam.load_images([path], small.preprocess)
    reference = small.explain(batch)
    same(small.explain(rgb), reference)
    same(small.explain(path), reference)
    same(small.explain(str(path)), reference)
    same(small.explain(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), color_order="BGR"), reference)
    # a BGR array read as RGB is another image: the option matters
    swapped = small.explain(np.ascontiguousarray(rgb[..., ::-1]))
    assert not np.allclose(swapped.logits, reference.logits)


def test_lists_and_stacks_of_images(small, photo):
    rgb, path = photo
    other = np.ascontiguousarray(np.rot90(rgb))          # 40x24: a list may mix sizes
    res = small.explain([rgb, other])
    assert res.maps["feat"].shape == (2, 32, 32)
    same(small.explain([path, path]), small.explain(np.stack([rgb, rgb])))
    batch, originals = to_batch([rgb, other], small.preprocess)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    assert [o.shape for o in originals] == [rgb.shape, other.shape]
    assert to_batch(random_images(2, (3, 32, 32)), small.preprocess)[1] is None   # preprocessed: as is


def test_grey_arrays_are_read_as_three_equal_channels(small, photo):
    grey = photo[0][..., 0].copy()
    same(small.explain(grey), small.explain(np.repeat(grey[..., None], 3, axis=2)))
    same(small.explain(grey[..., None]), small.explain(grey))


def test_pil_images_are_converted_without_onnxcam_importing_pil(small, photo):
    Image = pytest.importorskip("PIL.Image")
    rgb, path = photo
    reference = small.explain(rgb)
    same(small.explain(Image.fromarray(rgb)), reference)
    same(small.explain(Image.fromarray(rgb).convert("RGBA")), reference)   # alpha dropped by convert
    same(small.explain([Image.fromarray(rgb), Image.open(path)]), small.explain([rgb, rgb]))
    assert small.explain(Image.fromarray(rgb).convert("L")).maps["feat"].shape == (1, 32, 32)


def test_the_bundled_photo_as_array_matches_its_file(lite0):
    path = photo_paths(1)[0]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    same(lite0.explain(rgb, "gradcam"), lite0.explain(path, "gradcam"))


class FakeImage:
    """A PIL look-alike whose size is huge or whose convert fails."""

    def __init__(self, size=(10, 10), fail=False):
        self.size, self.fail = size, fail

    def convert(self, mode):
        if self.fail:
            raise OSError("image file is truncated\n(5 bytes not processed)")
        return np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def __array__(self, dtype=None, copy=None):
        return np.zeros((self.size[1], self.size[0], 3), np.uint8)


@pytest.mark.parametrize("x,match", [
    (np.zeros((3, 24, 40), np.uint8), r"shape \(3, 24, 40\).*transpose"),
    (np.zeros((24, 40, 4), np.uint8), "alpha"),
    (np.zeros((2, 24, 40, 4), np.uint8), "alpha"),
    (np.broadcast_to(np.zeros(1, np.uint8), (9000, 9000, 3)), "over onnxcam's limit"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    ([], "empty list"),
    ([np.zeros((8, 8, 3), np.uint8), "photo.jpg"], "mixes kinds"),
    (b"photo.jpg", "input is bytes"),
    ("no/such/photo.jpg", "image not found"),
    (FakeImage(size=(10000, 9000)), "over onnxcam's limit"),
    (FakeImage(fail=True), "cannot convert FakeImage to RGB .*truncated"),
])
def test_wrong_images_are_one_line(small, x, match):
    one_line_error(small.explain, x, match=match)


def test_color_order_is_checked(small, photo):
    one_line_error(small.explain, photo[0], color_order="bgr", match="color_order must be 'RGB' or 'BGR'")


def test_labels_given_to_the_explainer():
    ex = onnxcam.Explainer(small_cnn(), labels=[f"c{k}" for k in range(10)])
    assert ex.labels[3] == "c3"
    one_line_error(onnxcam.Explainer, small_cnn(), labels=["a", "b"], match="2 names for 10 classes")
    one_line_error(onnxcam.Explainer, small_cnn(), labels=5, match="labels must be")


def test_the_package_says_it_is_typed():
    import tomllib
    from pathlib import Path
    root = Path(onnxcam.__file__).parent
    assert (root / "py.typed").is_file()
    with open(root.parent / "pyproject.toml", "rb") as f:
        assert "py.typed" in tomllib.load(f)["tool"]["setuptools"]["package-data"]["onnxcam"]
