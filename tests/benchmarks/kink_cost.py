"""Near-kink counts (onnxcam/graph/kinks.py): what they cost and whether their tolerance is wide enough.

1. Cost: time of the gradient run (forward + backward graph, onnxruntime) with and without the
   appended counts, bundled EfficientNet-Lite0, 6 bundled photos, at the auto layer and an early
   layer; ratio with / without.
2. Tolerance: on torchvision ResNet-18/50 (random init, BN statistics perturbed, TorchScript and
   dynamo exports, the 6 bundled photos at 112 px), every ReLU input of PyTorch against
   onnxruntime's: the largest difference in units of eps32 * max|x| (what ULPS must exceed), the
   units whose ReLU decision flipped between the two runtimes, and how many of those flips the
   count flags (all should). The same cost table is printed for each export.

    python tests/benchmarks/kink_cost.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "converters"))

import onnxcam  # noqa: E402
from onnxcam import bundled  # noqa: E402
from onnxcam.graph.backward import gradient_graph  # noqa: E402
from onnxcam.graph.kinks import ULPS  # noqa: E402

EPS = float(np.finfo(np.float32).eps)


def best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cost(path, repeat):
    """Gradient run time without / with the counts at the auto layer and the earliest layer."""
    ex = onnxcam.Explainer(str(path))
    x = onnxcam.load_images(sorted(str(p) for p in bundled.PHOTOS.glob("*.jpg")), ex.preprocess)
    early = min((l for l in ex.layers if l.preferred), key=lambda l: l.depth)
    print(f"{Path(path).parent.name}: {'layer':<45} {'without s':>10} {'with s':>10} {'ratio':>6}")
    for layer in (ex.model.auto_layer, early):
        sessions = []
        for kinks in (False, True):
            graph, _ = gradient_graph(ex.model.proto, ex.model.score_name, [layer.name], True, kinks=kinks)
            sessions.append(ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]))
        feeds = {ex.model.input_name: x}
        times = [np.inf, np.inf]
        for _ in range(repeat):  # interleaved: the machine's load changes over time
            for k, sess in enumerate(sessions):
                times[k] = min(times[k], best(lambda: sess.run(None, feeds), 1))
        print(f"  {layer.name:<45} {times[0]:>10.4f} {times[1]:>10.4f} {times[1] / times[0]:>6.3f}")


def tolerance(arch, exporter, tmp, repeat):
    import torch
    from export_torchvision import build, export

    from onnxcam.graph.expose import forward_graph

    _, path = export(arch, Path(tmp) / f"{arch}-{exporter}" / "model.onnx", exporter=exporter, size=112,
                     seed=0, verify=False, randomize_bn=True)
    cost(path, repeat)
    ex = onnxcam.Explainer(path)
    x = onnxcam.load_images(sorted(str(p) for p in bundled.PHOTOS.glob("*.jpg")), ex.preprocess)
    proto = ex.model.proto
    relus = [n for n in proto.graph.node if n.op_type == "Relu"]
    sess, carried = ex.sessions.get(("relu inputs",), lambda: forward_graph(
        proto, ex.model.score_name, [n.input[0] for n in relus]))
    out = sess.run({ex.model.input_name: x})
    onnx_inputs = [out[carried[n.input[0]]] for n in relus]
    net = build(arch, seed=0, randomize_bn=True)
    torch_inputs = []
    # a pre-hook with a copy: torchvision's ReLUs work in place
    hooks = [m.register_forward_pre_hook(lambda mod, inp: torch_inputs.append(inp[0].detach().numpy().copy()))
             for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():
        net(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    worst, flips, flagged, near = 0.0, 0, 0, 0
    for t in torch_inputs:  # pair each torch ReLU input with the onnxruntime one holding its values
        scale = np.abs(t.reshape(len(t), -1)).max(axis=1).reshape(-1, *[1] * (t.ndim - 1))
        cands = [o for o in onnx_inputs if o.shape == t.shape]
        o = min(cands, key=lambda o: np.abs(o - t).max())
        worst = max(worst, float((np.abs(o - t) / (EPS * scale)).max()))
        flip = (o > 0) != (t > 0)
        is_near = np.abs(o) <= ULPS * EPS * np.abs(o.reshape(len(o), -1)).max(axis=1).reshape(scale.shape)
        flips += int(flip.sum())
        flagged += int((flip & is_near).sum())
        near += int(is_near.sum())
    print(f"{arch} {exporter:<11} ReLU inputs {len(torch_inputs):>3}  largest |torch - ort| = {worst:6.1f} eps32 * max|x|"
          f"  flips {flips}, flagged {flagged}; units counted near {near}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    cost(bundled.MODEL, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        for arch, exporter in (("resnet18", "torchscript"), ("resnet50", "torchscript"), ("resnet50", "dynamo")):
            tolerance(arch, exporter, tmp, args.repeat)


if __name__ == "__main__":
    main()
