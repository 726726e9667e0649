"""DeepLIFT rescale (methods/deeplift.py, graph/rules/deeplift.py): completeness on the bundled
model (ReLU6 = Clip, rescaled), the baseline choices, and Captum's DeepLift on a ReLU CNN with
MaxPool and a residual block."""
from __future__ import annotations

import numpy as np
import pytest

import onnxcam
from conftest import photo_paths
from onnxcam.errors import OnnxCamError


@pytest.mark.parametrize("baseline", ["zero", "black"])
def test_deeplift_is_complete_on_the_bundled_model(lite0, baseline):
    x = onnxcam.load_images(photo_paths(2), lite0.preprocess)
    res = lite0.explain(x, "deeplift", baseline=baseline)
    from onnxcam.methods.attribution import baseline as make_baseline
    from onnxcam.methods.base import Request
    base = make_baseline(Request(lite0, x, [], None, None, {}), baseline)[:1].astype(np.float32)
    s_x, s_b = lite0.forward(x)[0], lite0.forward(base)[0]
    total = res.pixels["input"].astype(np.float64).reshape(len(x), -1).sum(axis=1)
    want = s_x[np.arange(len(x)), res.target] - s_b[0, res.target]
    np.testing.assert_allclose(total, want, rtol=1e-4)
    np.testing.assert_allclose(res.conservation["input"], 1.0, atol=1e-4)
    assert "DeepLIFT completeness" in res.notes[-1]
    assert res.pixels["input"].shape == (len(x),) + x.shape[1:]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_deeplift_is_complete_through_relu_and_maxpool_in_either_layout(layout):
    from nets import nhwc_wrapper, small_cnn
    model = small_cnn() if layout == "NCHW" else nhwc_wrapper(small_cnn())
    ex = onnxcam.Explainer(model)
    shape = (3, 32, 32) if layout == "NCHW" else (32, 32, 3)
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype(np.float32)
    res = ex.explain(x, "deeplift", target=[1, 4])
    np.testing.assert_allclose(res.conservation["input"], 1.0, atol=1e-5)
    assert res.pixels["input"].shape == (2, 3, 32, 32) and list(res.target) == [1, 4]


def test_deeplift_batch_equals_one_image_at_a_time_where_a_tensor_folds_the_batch():
    """MobileViT's unfold folds the batch into the first axis ([N·P, ...]): the baseline's values,
    taken at batch 1, are repeated per image, so a batch gives what the images give one by one."""
    from pathlib import Path
    ex = onnxcam.Explainer(Path(__file__).parent / "fixtures" / "timm" / "mobilevit_xxs_torchscript.onnx")
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    both = ex.explain(x, "deeplift").pixels["input"]
    one = np.concatenate([ex.explain(x[i:i + 1], "deeplift").pixels["input"] for i in range(2)])
    np.testing.assert_allclose(both, one, rtol=0, atol=1e-6 * np.abs(one).max())   # float32 rounding


def test_deeplift_refuses_a_per_image_baseline(lite0):
    with pytest.raises(OnnxCamError, match="baseline") as e:
        lite0.explain(photo_paths(1), "deeplift", baseline="blur")
    assert "\n" not in str(e.value)


def _relu_cnn():
    """Conv-BN-ReLU, Conv-BN-MaxPool, a residual block (Conv-BN-ReLU-Conv-BN + skip, ReLU), Conv-ReLU,
    GAP, Linear-ReLU-Linear: every nonlinearity its own module (Captum's DeepLift hooks each module
    once), and no two of them adjacent: in Captum 0.9.0 a MaxPool right after a ReLU (or a ReLU
    right after a MaxPool) loses one of the two rules, as both hooks sit on the one tensor between
    them (measured: Conv-ReLU-MaxPool Pearson 0.996 / 0.975 against ours, with Captum equal to
    ours with MaxPool's plain gradient; with x * 1.0 in between, Captum equals ours, 1.000000)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c))
            self.out = nn.ReLU()

        def forward(self, x):
            return self.out(self.body(x) + x)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.MaxPool2d(2),
                        Block(16), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.own_process
def test_deeplift_equals_captum(export_dir):
    """Captum DeepLift (rescale, zero baseline) on the same torch network, two photos at 64 px:
    Pearson ≥ 0.999 per image (ReLU units at their kink may flip by rounding), and both complete:
    Σ attr = S(x) − S(0) within float32 rounding."""
    import torch
    from captum.attr import DeepLift
    net = _relu_cnn()
    path = export_dir / "deeplift_relu_cnn.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 64, 64), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(photo_paths(2), ex.preprocess)
    res = ex.explain(x, "deeplift")
    xt = torch.from_numpy(x)
    ref, delta = DeepLift(net).attribute(xt, torch.zeros_like(xt), torch.from_numpy(res.target),
                                         return_convergence_delta=True)
    ref = ref.detach().numpy().astype(np.float64)
    ours = res.pixels["input"].astype(np.float64)
    with torch.no_grad():
        s_x, s_0 = net(xt).numpy(), net(torch.zeros_like(xt)).numpy()
    want = s_x[np.arange(len(x)), res.target] - s_0[0, res.target]
    for i in range(len(x)):
        r = np.corrcoef(ours[i].ravel(), ref[i].ravel())[0, 1]
        gap = ours[i].sum() - want[i]
        print(f"image {i}: Pearson {r:.6f}, max |ours − captum| / max |captum| "
              f"{np.abs(ours[i] - ref[i]).max() / np.abs(ref[i]).max():.2e}, Σ attr − ΔS: ours {gap:.2e}, "
              f"captum {float(delta[i]):.2e} (ΔS = {want[i]:.4f})")
        assert r >= 0.999
        assert abs(gap) <= 1e-4 * max(1.0, abs(want[i]))
    np.testing.assert_allclose(res.conservation["input"], 1.0, atol=1e-4)
