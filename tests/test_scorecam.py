"""Score-CAM: the official variant against a plain numpy loop, the pytorch-grad-cam variant against
pytorch-grad-cam itself, batch-size independence, dedupe, constant channels and top-k."""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

import onnxcam
from onnxcam.methods.scorecam import plan_channels
from onnxcam.postprocess import softmax
from conftest import LITE0, photo_paths, random_images
from nets import small_cnn


def reference_scorecam(model, x, layer_acts, target):
    """The authors' loop, channel by channel, in numpy + a plain onnxruntime session."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    h, w = x.shape[2:]
    acc = np.zeros((h, w), np.float64)
    for a in layer_acts:
        up = cv2.resize(a.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        if up.max() == up.min():
            continue
        mask = (up - up.min()) / (up.max() - up.min())
        logits = sess.run(None, {"x": (x * mask).astype(np.float32)})[0][0]
        acc += softmax(logits)[target] * up
    acc = np.maximum(acc, 0)
    return ((acc - acc.min()) / (acc.max() - acc.min() + 1e-7)).astype(np.float32)


def test_official_variant_equals_numpy_reference():
    model = small_cnn(duplicate=True, dead=True, size=32)
    ex = onnxcam.Explainer(model)
    x = random_images(2, (3, 32, 32), seed=3)
    res = ex.explain(x, method="scorecam", layers="feat")
    _, acts = ex.forward(x, ["feat"])
    for i in range(2):
        ref = reference_scorecam(model, x[i:i + 1], acts["feat"][i], res.target[i])
        np.testing.assert_allclose(res.maps["feat"][i], ref, atol=1e-5)


def test_duplicate_masks_run_once_and_constant_channels_are_skipped():
    model = small_cnn(duplicate=True, dead=True)
    ex = onnxcam.Explainer(model)
    x = random_images(1, (3, 32, 32), seed=1)
    _, acts = ex.forward(x, ["feat"])
    a = acts["feat"][0]
    channels, unique_rows, inverse = plan_channels(a, skip_constant=True, top_k=None)
    assert 2 not in channels                         # dead channel: no forward pass
    assert inverse[list(channels).index(0)] == inverse[list(channels).index(1)]  # 2x channel 0
    assert len(unique_rows) == len(channels) - 1
    seen = []
    original = ex.masked_scores
    ex.masked_scores = lambda image, maps, **kw: seen.append(len(maps)) or original(image, maps, **kw)
    res = ex.explain(x, method="scorecam", layers="feat")
    assert seen == [len(unique_rows)]
    w = res.weights["feat"][0]
    assert w[1] == w[0] and w[2] == 0.0 and np.all(w[channels] > 0)
    np.testing.assert_allclose(res.raw["feat"][0], np.einsum("k,khw->hw", w, a), rtol=1e-5, atol=1e-6)


def test_pgc_variant_scores_every_channel_with_one_zero_mask():
    model = small_cnn(dead=True)
    ex = onnxcam.Explainer(model)
    a = ex.forward(random_images(1, (3, 32, 32)), ["feat"])[1]["feat"][0]
    channels, unique_rows, _ = plan_channels(a, skip_constant=False, top_k=None)
    assert len(channels) == 16 and len(unique_rows) <= 16
    flat = a.reshape(16, -1)
    constant = int((flat.max(1) == flat.min(1)).sum())
    assert constant >= 1
    assert len(unique_rows) == 16 - constant + 1      # all constant channels share the zero mask


def test_top_k_keeps_the_most_varied_channels():
    model = small_cnn()
    ex = onnxcam.Explainer(model)
    x = random_images(1, (3, 32, 32), seed=2)
    a = ex.forward(x, ["feat"])[1]["feat"][0]
    full = ex.explain(x, method="scorecam", layers="feat")
    top = ex.explain(x, method="scorecam", layers="feat", top_k=4)
    channels, _, _ = plan_channels(a, skip_constant=True, top_k=4)
    assert len(channels) == 4
    var = a.reshape(16, -1).var(1)
    assert set(channels) == set(np.argsort(-var)[:4])
    assert not np.allclose(full.raw["feat"], top.raw["feat"])


def test_batch_size_does_not_change_the_result():
    maps = {}
    x = onnxcam.load_images(photo_paths(1), onnxcam.Explainer(LITE0).preprocess)
    for batch in (1, 7, 64):
        ex = onnxcam.Explainer(LITE0, max_batch=batch)
        res = ex.explain(x, method="scorecam", top_k=200)
        maps[batch] = res
    for batch in (7, 64):
        np.testing.assert_allclose(maps[batch].raw[maps[1].layers[0]], maps[1].raw[maps[1].layers[0]],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(maps[batch].maps[maps[1].layers[0]], maps[1].maps[maps[1].layers[0]],
                                   atol=1e-5)


@pytest.mark.slow
def test_pgc_variant_equals_pytorch_grad_cam_on_resnet18(export_dir):
    import torch
    import torchvision  # noqa: F401 - test extras: a broken install must fail
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from export_torchvision import export

    net, path = export("resnet18", export_dir / "resnet18_112.onnx", size=112, seed=0, verify=False)
    ex = onnxcam.Explainer(path)
    spec = ex.preprocess
    x = onnxcam.load_images(photo_paths(2), spec)
    layer = max((l for l in ex.layers if l.name.startswith("/layer3/")), key=lambda l: l.depth)
    assert layer.shape == (256, 7, 7)
    res = ex.explain(x, method="scorecam-pgc", layers=layer.name)

    cam = pgc.ScoreCAM(model=net, target_layers=[net.layer3])
    cam.batch_size = 64
    xt = torch.from_numpy(x)
    targets = [ClassifierOutputTarget(int(t)) for t in res.target]
    with torch.no_grad():
        acts = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(xt)))))))
    raw = cam.get_cam_image(xt, net.layer3, targets, acts.numpy(), None)
    for i in range(len(x)):
        r = np.corrcoef(raw[i].ravel(), res.raw[layer.name][i].ravel())[0, 1]
        assert r >= 0.999, r
    maps = cam(input_tensor=xt, targets=targets)
    assert np.abs(maps - res.maps[layer.name]).max() < 1e-4
    np.testing.assert_allclose(res.weights[layer.name], cam.get_cam_weights(xt, net.layer3, targets,
                                                                            acts.numpy(), None),
                               rtol=1e-4, atol=1e-7)
