"""Gate flips between two runtimes, for the parity tests against PyTorch (autograd and Zennit).

A gate is a unit whose derivative is a decision: a ReLU / ReLU6 / Clip unit is on or off, a
MaxPool window sends its gradient to one winner. float32 forwards of torch and onnxruntime
round differently (different kernels, BatchNorm folded or not), so a pre-activation of ~1e-8 can
be on in one runtime and off in the other, and two near-equal values can swap a window's winner.
Everything the backward pass computes through that unit then differs, legitimately: each runtime
is right about its own forward.

What the parity tests do about it: torch takes onnxruntime's decisions and values at every gate
(`aligned_gates`), so both backward passes differentiate the same piecewise-linear branch and
the remaining difference is float32 rounding. Masking the flipped units' cones instead, or
comparing only where no gate downstream flipped, leaves nothing to compare as soon as a flip
happens behind a dense layer (VGG's classifier: its cone is every unit). The flips are counted
as their own figure, and each one must be explained by rounding: the unit lies within the
forward tolerance of its kink (or the window's two values within it of each other). A flip
farther out is a wrong forward, not a flip, and fails the test.

torch is patched at the functional level (F.relu, F.hardtanh, F.max_pool2d) for the duration of
the context: that covers nn.ReLU / nn.ReLU6 / nn.MaxPool2d modules and the functional calls
(DenseNet's final F.relu), whichever module object they come from.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# torch and onnxruntime forwards of the same float32 network agree within this fraction of a
# tensor's largest value: each output sums up to ~5k products (3x3x512) with relative rounding
# 6e-8, through ~20 layers, and BatchNorm is folded into the Conv on one side only. The tests
# already match tensors across the runtimes with it; a gate is told apart by it here.
FORWARD_RTOL = 1e-4


@dataclass
class OnnxGate:
    node: str
    tensor: str               # the ONNX tensor holding the gate's output
    kind: str                 # "relu" (Relu/Clip) or "maxpool"
    values: np.ndarray        # the gate's output
    low: float = -np.inf      # Relu: 0; Clip: its min / max
    high: float = np.inf
    winners: np.ndarray | None = None   # MaxPool: flat index of each window's maximum


@dataclass
class GateFlips:
    """What happened at the gates during one aligned torch run."""
    aligned: int = 0                       # gate calls that took onnxruntime's decisions
    unmatched: list = field(default_factory=list)   # torch gate calls no onnxruntime tensor matched
    flips: dict = field(default_factory=dict)       # onnxruntime node -> units decided differently
    unexplained: list = field(default_factory=list)  # flips too far from the kink to be rounding

    @property
    def total(self) -> int:
        return sum(self.flips.values())

    def report(self) -> str:
        where = ", ".join(f"{n}: {c}" for n, c in self.flips.items() if c) or "none"
        return (f"{self.aligned} gate calls aligned to onnxruntime, {self.total} units flipped ({where}), "
                f"{len(self.unmatched)} unmatched, {len(self.unexplained)} flips not explained by rounding")

    def check(self) -> None:
        """Every torch gate found its onnxruntime twin and every flip is a rounding flip."""
        assert not self.unmatched, f"no onnxruntime gate holds these torch values: {self.unmatched[:5]}; {self.report()}"
        assert not self.unexplained, f"{self.unexplained[:5]}; {self.report()}"


def _constant(model: onnx.ModelProto, name: str, default: float) -> float:
    if not name:
        return default
    for t in model.graph.initializer:
        if t.name == name:
            return float(numpy_helper.to_array(t))
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return float(numpy_helper.to_array(n.attribute[0].t))
    raise AssertionError(f"Clip bound {name} is computed at run time")


def onnx_gates(model: onnx.ModelProto, feeds: dict[str, np.ndarray], batch: int | None = None) -> list[OnnxGate]:
    """onnxruntime's output at every Relu, Clip and MaxPool of the model (and each window's winner),
    read from a run of `model`: pass the very explain graph onnxcam runs (its own nodes, named
    "onnxcam/...", are skipped), with its feeds and batch size, so the decisions are the ones
    onnxcam's gradient or relevance took; `assert_same_run` checks that.

    MaxPool nodes without an Indices output get one, as onnxcam's backward graph gives them.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    gates, outputs = [], []
    for i, node in enumerate(m.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if name.startswith("onnxcam/"):
            continue
        if node.op_type in ("Relu", "Clip"):
            low, high = 0.0, np.inf
            if node.op_type == "Clip":
                bounds = list(node.input[1:]) + ["", ""]
                low, high = _constant(m, bounds[0], -np.inf), _constant(m, bounds[1], np.inf)
            gates.append(OnnxGate(name, node.output[0], "relu", None, low, high))
            outputs.append([node.output[0]])
        elif node.op_type == "MaxPool":
            if len(node.output) < 2 or not node.output[1]:
                del node.output[1:]
                node.output.append(f"{name}/gateflips_indices")
            gates.append(OnnxGate(name, node.output[0], "maxpool", None))
            outputs.append(list(node.output[:2]))
    # the graph's own outputs stay: without them onnxruntime would prune the backward nodes and
    # fuse the forward differently, which rounds differently
    wanted = [o for names in outputs for o in names]
    present = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(o, onnx.TensorProto.INT64 if k else onnx.TensorProto.FLOAT, None)
                          for names in outputs for k, o in enumerate(names) if o not in present)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    step = batch or n
    runs = [sess.run(wanted, {k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
    values = iter([np.concatenate(parts) for parts in zip(*runs)])
    for gate, names in zip(gates, outputs):
        gate.values = next(values)
        if gate.kind == "maxpool":
            gate.winners = next(values)      # flat over each run's N*C*H*W (taken mod H*W below)
    return gates


@contextlib.contextmanager
def aligned_gates(gates: list[OnnxGate]):
    """torch takes onnxruntime's values and on/off decisions at every ReLU / ReLU6 / MaxPool2d
    (the gradient flows through torch's own graph). Yields the GateFlips record."""
    import torch
    import torch.nn.functional as F

    record = GateFlips()
    by_shape: dict[tuple, list[OnnxGate]] = {}
    for g in gates:
        by_shape.setdefault(tuple(g.values.shape), []).append(g)
    max_pool_with_indices = F.max_pool2d_with_indices

    def twin(out: np.ndarray, kind: str, bounds=None):
        scale = max(float(np.abs(out).max()), 1e-6)
        for g in by_shape.get(out.shape, []):
            if g.kind == kind and bounds in (None, (g.low, g.high)) \
                    and np.abs(g.values - out).max() <= FORWARD_RTOL * scale:
                return g, FORWARD_RTOL * scale
        return None, None

    def clamp(x, low, high, what):
        out = x.clamp(min=None if low == -np.inf else low, max=None if high == np.inf else high)
        o = out.detach().numpy()
        g, tol = twin(o, "relu", (low, high))
        if g is None:
            record.unmatched.append(f"{what} {tuple(o.shape)}")
            return out
        record.aligned += 1
        on_onnx = (g.values > low) & (g.values < high)
        xin = x.detach().numpy()
        flipped = on_onnx != ((xin > low) & (xin < high))
        record.flips[g.node] = record.flips.get(g.node, 0) + int(flipped.sum())
        distance = np.minimum(np.abs(xin - low), np.abs(xin - high))[flipped]
        if distance.size and distance.max() > tol:
            record.unexplained.append(f"{g.node}: a unit {distance.max():.3g} from its kink flipped")
        gate = torch.from_numpy(on_onnx.astype(np.float32))
        through = x * gate                         # d/dx = onnxruntime's decision
        return through + (torch.from_numpy(g.values) - through).detach()   # value = onnxruntime's

    def patched_relu(x, inplace=False):
        return clamp(x, 0.0, np.inf, "relu")

    def patched_hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
        return clamp(x, float(min_val), float(max_val), "hardtanh")

    def patched_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                         return_indices=False):
        out, idx = max_pool_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode, True)
        o = out.detach().numpy()
        g, tol = twin(o, "maxpool")
        if g is None:
            record.unmatched.append(f"max_pool2d {tuple(o.shape)}")
            return (out, idx) if return_indices else out
        record.aligned += 1
        plane = x.shape[2] * x.shape[3]
        ort_idx = g.winners % plane                # the winner within its own (image, channel) plane
        torch_idx = idx.numpy()
        flipped = ort_idx != torch_idx
        record.flips[g.node] = record.flips.get(g.node, 0) + int(flipped.sum())
        flat = x.detach().numpy().reshape(x.shape[0], x.shape[1], -1)
        gap = np.abs(np.take_along_axis(flat, ort_idx.reshape(*flat.shape[:2], -1), 2)
                     - np.take_along_axis(flat, torch_idx.reshape(*flat.shape[:2], -1), 2))
        if gap.size and gap.max() > tol:
            record.unexplained.append(f"{g.node}: winners {gap.max():.3g} apart swapped")
        winners = torch.from_numpy(ort_idx.reshape(*flat.shape[:2], -1))
        through = x.flatten(2).gather(2, winners).view_as(out)   # d/dx = onnxruntime's winner
        forced = through + (torch.from_numpy(g.values) - through).detach()
        return (forced, torch.from_numpy(ort_idx)) if return_indices else forced

    saved = {"relu": F.relu, "hardtanh": F.hardtanh, "max_pool2d": F.max_pool2d}
    F.relu, F.hardtanh, F.max_pool2d = patched_relu, patched_hardtanh, patched_max_pool
    try:
        yield record
    finally:
        for k, v in saved.items():
            setattr(F, k, v)


def last_explain_graph(ex) -> tuple[onnx.ModelProto, int | None]:
    """The explain graph of the Explainer's most recent run and the batch it ran at (its session
    cache keeps the most recently used last).

    The Explainer's cached sessions are dropped: the caller runs its own session of this graph next
    (onnx_gates), and on a ResNet-50 the cached explain sessions beside it added ~0.9 GB to the peak.
    """
    key = list(ex.sessions._sessions)[-1]
    graph, batch = ex.sessions.graph(key), ex._batches.get(key)
    ex.sessions.clear()
    return graph, batch


def assert_same_run(gates: list[OnnxGate], acts: dict[str, np.ndarray]) -> None:
    """The gates' run and the explain run (`acts`: the tensors it returned) agree bit for bit
    where they overlap, so the decisions torch is given are the ones onnxcam's graph took. (A
    network without gates, SiLU or GELU only, has nothing to align.)"""
    shared = [g for g in gates if g.tensor in acts]
    assert shared or not gates, "no gate among the explain run's tensors to check the gates' run against"
    for g in shared:
        np.testing.assert_array_equal(acts[g.tensor], g.values, err_msg=f"{g.node}: two onnxruntime runs differ")
