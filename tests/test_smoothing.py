"""eigen_smooth (methods/base.channel_sum) and aug_smooth (onnxcam/smoothing.py): their
definitions on the bundled model, and pytorch-grad-cam's on ResNet-18."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from onnxcam.errors import OnnxCamError
from onnxcam.methods.base import principal_map


def test_eigen_smooth_is_the_principal_component_of_the_weighted_activations(lite0):
    photos = photo_paths(2)
    plain = lite0.explain(photos, "gradcam")
    layer = plain.layers[0]
    smooth = lite0.explain(photos, "gradcam", eigen_smooth=True)
    _, acts = lite0.forward(onnxcam.load_images(photos, lite0.preprocess), [layer])
    weighted = plain.weights[layer][:, :, None, None].astype(np.float64) * acts[layer]
    for i in range(2):
        np.testing.assert_allclose(smooth.raw[layer][i], principal_map(weighted[i]), rtol=1e-4, atol=1e-5)
    hires = lite0.explain(photos, "hirescam", eigen_smooth=True)
    assert hires.raw[layer].shape == plain.raw[layer].shape


def test_aug_smooth_is_the_mean_of_the_six_mapped_back_maps(lite0):
    x = onnxcam.load_images(photo_paths(1), lite0.preprocess)
    target = int(lite0.forward(x)[0].argmax())
    smooth = lite0.explain(x, "gradcam", aug_smooth=True)
    layer = smooth.layers[0]
    maps = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            moved = (np.ascontiguousarray(x[..., ::-1]) if flip else x) * np.float32(factor)
            m = lite0.explain(moved, "gradcam", target=target).maps[layer]
            maps.append(m[..., ::-1] if flip else m)
    np.testing.assert_allclose(smooth.maps[layer], np.mean(maps, axis=0), atol=1e-6)
    np.testing.assert_array_equal(smooth.target, [target])
    assert "aug_smooth" in smooth.notes[-1]


@pytest.mark.parametrize("options, words", [({"aug_smooth": "yes"}, "aug_smooth"),
                                            ({"eigen_smooth": 1}, "eigen_smooth")])
def test_smoothing_flags_must_be_bools(lite0, options, words):
    with pytest.raises(OnnxCamError, match=words):
        lite0.explain(photo_paths(1), "gradcam", **options)


def test_cli_smoothing_flags(tmp_path, capsys):
    from onnxcam.cli import main
    code = main(["explain", "models/efficientnet_lite0/model.onnx", str(photo_paths(1)[0]), "--method",
                 "gradcam,scorecam", "--eigen-smooth", "--aug-smooth", "--top-k", "8", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert any(p.name.endswith("montage.png") for p in tmp_path.iterdir())


@pytest.mark.own_process
def test_smoothing_equals_pytorch_grad_cam(export_dir):
    """GradCAM on ResNet-18 layer4 with eigen_smooth (raw maps, up to the SVD's sign, which
    pytorch-grad-cam leaves arbitrary) and with aug_smooth (final maps, targets given: pgc without
    targets would take each augmented image's top-1). ReLU kinks may flip: Pearson ≥ 0.999."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchpairs import last_layer, torchvision_pair
    net, ex, x = torchvision_pair("resnet18", export_dir)
    layer = last_layer(ex, "/layer4/")
    targets = ex.forward(x)[0].argmax(axis=1)
    cam = GradCAM(net, [net.layer4])
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    ours = ex.explain(x, "gradcam", layers=layer, eigen_smooth=True).raw[layer]
    cam(torch.from_numpy(x), wanted, eigen_smooth=True)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    theirs = cam.get_cam_image(torch.from_numpy(x), net.layer4, wanted, acts, grads, eigen_smooth=True)
    for a, b in zip(ours, theirs):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) >= 0.999
    ours = ex.explain(x, "gradcam", layers=layer, target=targets, aug_smooth=True).maps[layer]
    theirs = cam(torch.from_numpy(x), wanted, aug_smooth=True)
    for a, b in zip(ours, theirs):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999
