"""Targets on small torch nets exported with the TorchScript exporter (a few seconds): the score
each target builds in the graph equals numpy's on torch's output, its gradient equals autograd,
and every wrong argument is one OnnxCamError line. The real torchvision models are in
test_targets_parity.py."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import onnxcam
from onnxcam import OnnxCamError
from onnxcam.cli import main
from onnxcam.targets import Classify, Embed, MultiLabel, Output, Segment

import torch

SIZE = 32


class TinySegmenter(torch.nn.Module):
    """conv-ReLU-stride 2-conv-ReLU (feat, 8x8), a 1x1 classifier to 3 classes, bilinear up to
    `up` (16: half the input, as segmenters whose output is coarser than the image)."""
    def __init__(self, up: int = 16):
        super().__init__()
        self.up = up
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU())
        self.head = torch.nn.Conv2d(16, 3, 1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.head(self.body(x)), size=(self.up, self.up),
                                               mode="bilinear", align_corners=False)


class TinyTagger(torch.nn.Module):
    """A multi-label classifier: conv-ReLU, global pool, 5 sigmoid outputs."""
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.body(x).mean(dim=(2, 3))))


def export(net, path, name="out"):
    torch.manual_seed(0)
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False, input_names=["image"],
                      output_names=[name], dynamic_axes={"image": {0: "N"}, name: {0: "N"}}, opset_version=17)
    return str(path)


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    torch.manual_seed(0)
    net = TinySegmenter()
    return net, export(net, tmp_path_factory.mktemp("seg") / "seg.onnx")


def images(n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, SIZE, SIZE)).astype(np.float32)


def feat_gradient(net, x, score_fn):
    """(feat, dS/dfeat) by autograd, S = score_fn(output).sum()."""
    feat = net.body(torch.from_numpy(x))
    feat.retain_grad()
    out = net.head(feat) if isinstance(net, TinySegmenter) else None
    if isinstance(net, TinySegmenter):
        out = torch.nn.functional.interpolate(out, size=(net.up, net.up), mode="bilinear", align_corners=False)
    else:
        out = net.fc(feat.mean(dim=(2, 3)))
    score_fn(out).sum().backward()
    return feat.detach().numpy(), feat.grad.numpy()


def test_segment_mask_at_input_size_scores_and_gradients(seg):
    net, path = seg
    mask = np.zeros((SIZE, SIZE), bool)
    mask[4:20, 8:30] = True                      # at the input's size: resized to the 16x16 output
    ex = onnxcam.Explainer(path, target=Segment(cls=1, mask=mask))
    x = images()
    small = mask[::2, ::2].astype(np.float32)    # nearest-neighbour halving
    _, _, acts, grads = ex.gradients(x, [ex.model.auto_layer], target=None)
    layer = ex.model.auto_layer
    assert layer.shape == (16, 8, 8)             # the features before the 3-class head, not the head
    a, g = feat_gradient(net, x, lambda out: (out[:, 1] * torch.from_numpy(small)).sum(dim=(1, 2)))
    np.testing.assert_allclose(acts[layer.name], a, atol=1e-5)
    np.testing.assert_allclose(grads[layer.name], g, atol=1e-5 * np.abs(g).max())
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    res = ex.explain(x, "gradcam")
    np.testing.assert_allclose(res.logits, (out * small).sum(axis=(2, 3)), rtol=1e-4, atol=1e-5)
    assert list(res.target) == [1, 1]            # the target's class when explain names none
    assert list(ex.explain(x, "gradcam", target=2).target) == [2, 2]
    copy = ex.derived(ex.model.proto)            # e.g. randomized layers: the target is kept, not re-applied
    assert copy.model.default_target == 1 and copy.model.auto_layer == layer
    np.testing.assert_allclose(copy.forward(x)[0], res.logits, atol=1e-5)


def test_segment_argmax_region_is_constant_to_the_gradient(seg):
    net, path = seg
    ex = onnxcam.Explainer(path, target=Segment())
    x = images(3, seed=1)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    region = (out.argmax(axis=1)[:, None] == np.arange(3)[None, :, None, None]).astype(np.float32)
    layer = ex.model.auto_layer
    scores, targets, _, grads = ex.gradients(x, [layer], target=0)
    np.testing.assert_allclose(scores, (out * region).sum(axis=(2, 3)), rtol=1e-4, atol=1e-5)
    _, g = feat_gradient(net, x, lambda o: (o[:, 0] * torch.from_numpy(region[:, 0])).sum(dim=(1, 2)))
    np.testing.assert_allclose(grads[layer.name], g, atol=1e-5 * np.abs(g).max())
    for method in ("hirescam", "scorecam", "lrp", "relevancecam"):
        for raw in ex.explain(x, method).raw.values():
            assert np.all(np.isfinite(raw)) and np.ptp(raw) > 0, method


def test_explain_takes_a_target_object_and_the_exported_explainer_ends_at_s(seg, tmp_path):
    _, path = seg
    ex = onnxcam.Explainer(path, target=Segment())
    x = images()
    res = ex.explain(x, "gradcam", target=1)
    via = onnxcam.Explainer(path, target=Output("out")).explain(x, "gradcam", target=Segment(cls=1))
    np.testing.assert_allclose(via.raw[via.layers[0]], res.raw[res.layers[0]], atol=1e-6)
    model = onnxcam.build_explainer_model(ex, "gradcam")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    assert any(np.allclose(v, res.logits, atol=1e-5) for v in outs.values() if v.shape == res.logits.shape)


def test_output_target_explains_one_element(seg):
    net, path = seg
    ex = onnxcam.Explainer(path, target=Output("out", index=1 * 256 + 5 * 16 + 7))
    assert ex.model.num_classes == 3 * 16 * 16
    x = images()
    layer = ex.model.auto_layer
    _, targets, _, grads = ex.gradients(x, [layer])
    assert list(targets) == [1 * 256 + 5 * 16 + 7] * 2
    _, g = feat_gradient(net, x, lambda o: o[:, 1, 5, 7])
    np.testing.assert_allclose(grads[layer.name], g, atol=1e-5 * np.abs(g).max())


def test_multilabel_explains_the_pre_sigmoid_logit(tmp_path):
    torch.manual_seed(0)
    net = TinyTagger()
    path = export(net, tmp_path / "tagger.onnx", "probs")
    ex = onnxcam.Explainer(path, target=MultiLabel(cls=3))
    assert ex.model.final_activation == "Sigmoid"
    x = images()
    layer = ex.model.auto_layer
    scores, targets, _, grads = ex.gradients(x, [layer])
    assert list(targets) == [3, 3]
    _, g = feat_gradient(net, x, lambda logits: logits[:, 3])
    np.testing.assert_allclose(grads[layer.name], g, atol=1e-5 * np.abs(g).max())
    with torch.no_grad():
        probs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ex.probabilities(scores), probs, atol=1e-5)


def test_wrong_targets_are_one_line_errors(seg, tmp_path):
    _, path = seg
    torch.manual_seed(0)
    softmax = export(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                         torch.nn.Flatten(), torch.nn.Softmax(dim=1)), tmp_path / "cls.onnx")
    cases = [
        (lambda: onnxcam.Explainer(path), "target=onnxcam.targets.Segment"),
        (lambda: onnxcam.Explainer(path, target=Segment(cls=3)), "class 3 is out of range"),
        (lambda: onnxcam.Explainer(path, target=Segment(mask=np.zeros((16, 16)))), "mask is empty"),
        (lambda: onnxcam.Explainer(path, target=Segment(mask=np.ones((16, 9)))), "give a mask of the"),
        (lambda: Segment(cls=True), "cls must be a class index"),
        (lambda: Segment(mask=np.ones((2, 3, 4))), "mask must be a 2-D array"),
        (lambda: onnxcam.Explainer(path, target=Segment(output="logits")), "has no output 'logits'"),
        (lambda: onnxcam.Explainer(softmax, target=Segment()), "dense [N, K, H, W] output"),
        (lambda: onnxcam.Explainer(softmax, target=MultiLabel()), "not a Sigmoid"),
        (lambda: onnxcam.Explainer(path, target=Output("out", index=768)), "index 768 is out of range"),
        (lambda: onnxcam.Explainer(path, target=Embed(np.ones(4))), "Embed needs an [N, D]"),
        (lambda: onnxcam.Explainer(softmax, target=Embed(np.ones(3))), "the reference has 3 values"),
        (lambda: Embed(np.zeros(4)), "zero vector"),
        (lambda: Embed([np.nan, 1.0]), "NaN"),
        (lambda: onnxcam.Explainer(path, target="segment"), "onnxcam.targets object"),
    ]
    for make, words in cases:
        with pytest.raises(OnnxCamError) as err:
            make()
        assert words in str(err.value) and "\n" not in str(err.value), (words, str(err.value))
    ex = onnxcam.Explainer(softmax, target=Classify(cls=2))
    assert ex.model.default_target == 2 and ex.model.final_activation == "Softmax"


def test_cli_tasks(seg, tmp_path, capsys):
    import cv2
    _, path = seg
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:24, 8:24] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    photo = np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    args = [path, str(tmp_path / "photo.png"), "--method", "gradcam", "--json"]
    assert main(["explain", *args, "--task", "segment", "--mask", str(tmp_path / "mask.png"), "--class", "2",
                 "--out", str(tmp_path / "seg")]) == 0
    images = json.loads(capsys.readouterr().out)["images"]
    assert [i["target"] for i in images] == [2]
    # region sums are not class scores: no softmax "probability" over them
    assert all(t["probability"] is None for t in images[0]["top5"])
    assert main(["explain", *args, "--task", "output", "--output", "out:5", "--out", str(tmp_path / "o")]) == 0
    assert [i["target"] for i in json.loads(capsys.readouterr().out)["images"]] == [5]
    for bad, words in [(["--task", "embed", "--reference", str(tmp_path / "photo.png")], "Embed needs an [N, D]"),
                       (["--task", "classify", "--mask", str(tmp_path / "mask.png")], "--mask is for --task segment"),
                       (["--task", "embed"], "needs --reference"),
                       (["--task", "segment", "--output", "out:x"], "--output must be NAME"),
                       (["--task", "segment", "--output", "out:3"], "is for --task output")]:
        assert main(["explain", *args, *bad, "--out", str(tmp_path / "bad")]) != 0
        err = capsys.readouterr().err
        assert words in err, err
