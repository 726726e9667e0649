"""The parity tests' gate alignment (gateflips.py) on hand-made flips: torch follows onnxruntime's
decision in both directions, each flip is counted, and a "flip" far from its kink is refused."""
from __future__ import annotations

import numpy as np
import pytest

from gateflips import OnnxGate, aligned_gates

torch = pytest.importorskip("torch")   # the test extras install it
F = torch.nn.functional


def test_relu_units_take_onnxruntime_decisions_both_ways():
    z = torch.tensor([[1.0, 1e-7, -1e-7, -2.0]], requires_grad=True)   # pre-activations
    # onnxruntime rounded the two near-zero units to the other side of the kink
    gate = OnnxGate("relu_0", "r", "relu", np.array([[1.0, 0.0, 1e-7, 0.0]], np.float32), 0.0, np.inf)
    with aligned_gates([gate]) as flips:
        y = F.relu(z)
    np.testing.assert_array_equal(y.detach().numpy(), gate.values)   # onnxruntime's values
    y.backward(torch.ones_like(y))
    np.testing.assert_array_equal(z.grad.numpy(), [[1.0, 0.0, 1.0, 0.0]])   # and its decisions
    assert flips.total == 2 and flips.aligned == 1 and flips.flips == {"relu_0": 2}
    flips.check()
    assert F.relu is torch.nn.functional.relu and F.relu(torch.tensor([-1.0])).item() == 0.0  # restored


def test_relu6_module_and_maxpool_near_tie():
    x = torch.tensor([[[[6.0 - 1e-6, 1.0], [1.0 + 1e-7, 0.5]]]], requires_grad=True)
    clipped = OnnxGate("clip_0", "c", "relu", np.array([[[[6.0, 1.0], [1.0 + 1e-7, 0.5]]]], np.float32), 0.0, 6.0)
    pooled = OnnxGate("pool_0", "p", "maxpool", np.array([[[[6.0]]]], np.float32),
                      winners=np.array([[[[0]]]]))
    with aligned_gates([clipped, pooled]) as flips:
        y = torch.nn.ReLU6()(x)
        p = torch.nn.MaxPool2d(2)(y)
    p.sum().backward()
    assert flips.flips == {"clip_0": 1, "pool_0": 0}     # 6 - 1e-6 counted as saturated by onnxruntime
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((1, 1, 2, 2)))   # the winner is off
    x.grad = None
    near_tie = OnnxGate("pool_1", "p", "maxpool", np.array([[[[1.0]]]], np.float32), winners=np.array([[[[1]]]]))
    z = torch.tensor([[[[0.0, 1.0], [1.0 + 1e-7, 0.5]]]], requires_grad=True)
    with aligned_gates([near_tie]) as flips:
        F.max_pool2d(z, 2).sum().backward()
    assert flips.total == 1
    flips.check()
    np.testing.assert_array_equal(z.grad.numpy().ravel(), [0, 1, 0, 0])    # onnxruntime's winner


def test_a_flip_far_from_its_kink_is_not_rounding():
    z = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    wrong = OnnxGate("pool_2", "p", "maxpool", np.array([[[[1.0]]]], np.float32), winners=np.array([[[[2]]]]))
    with aligned_gates([wrong]) as flips:
        F.max_pool2d(z, 2)
    with pytest.raises(AssertionError, match="not explained by rounding"):
        flips.check()
    other = OnnxGate("relu_1", "r", "relu", np.array([[0.5]], np.float32), 0.0, np.inf)
    with aligned_gates([other]) as flips:
        F.relu(torch.tensor([[-0.5]]))
    with pytest.raises(AssertionError, match="no onnxruntime gate holds"):
        flips.check()
