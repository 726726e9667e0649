"""Export ultralytics YOLOv8 / YOLO11 detectors with RANDOM weights to ONNX, plus autograd golden values.

Why: onnxcam explains exported YOLO-style detectors ([N, 4+K, A] heads); its CI tests need real
YOLO graphs from both PyTorch exporters and reference numbers computed by torch itself, without
ultralytics (AGPL-3.0, and it pulls opencv-python, which clashes with opencv-python-headless) in
the project's venv. Only the architecture comes from ultralytics' published YAML configs; the
weights are random (seeded), so the fixtures hold no ultralytics weights.

ultralytics lives OUTSIDE the venv and is put on the path for this script only::

    /work/venv/bin/pip download ultralytics --no-deps -d /tmp/u
    /work/venv/bin/pip install --no-deps --target /work/ultra /tmp/u/ultralytics-*.whl
    PYTHONPATH=/work/ultra:$PWD python converters/export_yolo.py --out-dir tests/fixtures/yolo

(ultralytics 8.4.190 builds and exports with what the venv already has: torch, numpy, PyYAML,
opencv-python-headless, matplotlib, pillow, scipy, tqdm.)

Per model and exporter it writes `<name>.onnx` (weights inside the file), and once per model
`<name>.golden.npz` with, for the letterboxed photo `PHOTO` (uint8 view, stored) and the
candidate with the highest class score (the best detection) and its class c:

* `logit`: the pre-sigmoid class-c logit of that candidate (what Detect(cls=c) explains);
* for each of the three neck outputs P3, P4, P5 that feed the Detect head (`layers`): the
  activation and autograd's gradient d logit / d activation;
* pytorch-grad-cam's GradCAM and HiResCAM raw maps (`get_cam_image`, before scaling) at those
  layers with a custom target selecting that same logit.

Small: width multiple 0.1 (0.4 of 'n'; 'n' files are ~12 MB) and 20 classes, depth as 'n',
320 x 320 input (2100 candidates). BatchNorm running statistics are perturbed (seeded) so the
random net is not a stack of near-identities and the class logits vary across candidates.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402

SIZE = 320
CLASSES = 20
WIDTH = 0.1
PHOTO = "astronaut.jpg"
DETECTED = 12   # candidates of PHOTO above 0.25 confidence (before NMS)
# the neck outputs feeding Detect (P3/8, P4/16, P5/32), by index in the YAML's layer list
NECK = {"yolov8": (15, 18, 21), "yolo11": (16, 19, 22)}
CONFIGS = {"yolov8": "v8/yolov8.yaml", "yolo11": "11/yolo11.yaml"}


def build(arch: str, seed: int = 0, width: float = WIDTH, classes: int = CLASSES):
    """ultralytics DetectionModel from its published YAML (depth of 'n', `width`), random weights,
    perturbed BN statistics, eval mode, head in export mode (output [N, 4+K, A], no tuple)."""
    import torch
    import yaml
    from ultralytics import __file__ as ultra_init
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

    cfg = yaml.safe_load((Path(ultra_init).parent / "cfg" / "models" / CONFIGS[arch]).read_text())
    depth = cfg["scales"]["n"][0]
    cfg["scales"] = {"t": [depth, width, 1024]}
    cfg["scale"] = "t"
    torch.manual_seed(seed)
    model = DetectionModel(cfg, ch=3, nc=classes, verbose=False)
    photo = torch.from_numpy(letterboxed_view(C.PHOTOS / PHOTO).astype(np.float32).transpose(2, 0, 1)[None] / 255)
    calibrate(model, torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)), photo)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", False
    return model


def calibrate(model, images, photo) -> None:
    """BatchNorm statistics from one batch (momentum 1: the batch's own mean and variance), then
    perturbed by ±10 %: without it a random SiLU net shrinks its signal layer by layer (class
    logits vary by ~0.02), with it every layer is about unit-scale. The class convolutions' bias
    (ultralytics' prior, log(5 / K / (640 / stride)²) ≈ -10) is then set so that DETECTED
    candidates of the photo pass ultralytics' 0.25 confidence: a few detections, not none or 300."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    for m in bns:
        m.momentum = 1.0
    with torch.no_grad():
        model(images)
        for m in bns:
            m.running_mean.mul_(1 + 0.1 * (2 * torch.rand_like(m.running_mean) - 1))
            m.running_var.mul_(1 + 0.1 * (2 * torch.rand_like(m.running_var) - 1))
            m.momentum = 0.03
        head = model.model[-1]
        for cls_head in head.cv3:
            cls_head[-1].bias.zero_()
        model.eval()
        best = np.sort(Logits(model)(photo)[0].max(dim=0).values.numpy())[::-1]
        bias = np.log(0.25 / 0.75) - (best[DETECTED - 1] + best[DETECTED]) / 2
        for cls_head in head.cv3:
            cls_head[-1].bias.fill_(float(bias))
        head._inference = type(head)._inference.__get__(head)   # drop Logits' wrapper


def Logits(model):
    """The detector with its pre-sigmoid class scores [N, K, A] as output (for autograd and
    pytorch-grad-cam): ultralytics' Detect computes them and applies the sigmoid in _inference,
    which is wrapped here to keep them."""
    import torch

    head = model.model[-1]
    original = type(head)._inference.__get__(head)

    def keep(x):
        head.kept_scores = x["scores"]
        return original(x)
    head._inference = keep

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            self.model(x)
            return head.kept_scores
    return Net()


def export(model, out: Path, exporter: str) -> Path:
    """One ONNX file with the weights inside (the dynamo exporter's external data folded back)."""
    import onnx
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    C.torch_export(model, torch.zeros(1, 3, SIZE, SIZE), tmp, exporter=exporter, dynamic_batch=exporter == "torchscript",
                   opset=17, input_name="images", output_name="output0")
    model.model[-1].shape = None   # Detect caches anchors per input shape: the export left fake tensors
    proto = onnx.load(str(tmp))
    onnx.save(proto, str(out))
    for f in (tmp, Path(str(tmp) + ".data")):
        f.unlink(missing_ok=True)
    return out


def letterboxed_view(path: Path) -> np.ndarray:
    """The uint8 RGB view onnxcam makes of the photo with the fixtures' letterbox sidecar."""
    from onnxcam.preprocess import load_images, spec_from_dict

    _, views = load_images([path], spec_from_dict(sidecar()), return_views=True)
    return views[0]


def sidecar() -> dict:
    """The preprocessing YOLO exports expect: RGB 0..1, letterbox to 320 padded with grey 114."""
    return {"size": [SIZE, SIZE], "mean": [0.0], "std": [1.0], "scale": 1 / 255, "resize": "letterbox",
            "labels": "labels.txt"}


def golden(model, arch: str, view: np.ndarray) -> dict:
    """Autograd and pytorch-grad-cam reference values for the best candidate (see module doc)."""
    import torch
    from pytorch_grad_cam import GradCAM, HiResCAM

    net = Logits(model)
    x = torch.from_numpy(view.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        logits = net(x)[0]                          # [K, A]
    cls, cand = np.unravel_index(int(logits.argmax()), tuple(logits.shape))
    layers = [model.model[i] for i in NECK[arch]]
    kept = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: kept.__setitem__(k, o)) for k, m in enumerate(layers)]
    s = net(x)[0, cls, cand]
    for a in kept.values():
        a.retain_grad()
    s.backward()
    for h in hooks:
        h.remove()
    out = {"view": view, "cls": np.int64(cls), "candidate": np.int64(cand), "logit": np.float32(s.item())}
    for k in range(len(layers)):
        out[f"act{k}"] = kept[k].detach().numpy()[0]
        out[f"grad{k}"] = kept[k].grad.numpy()[0]

    def target(output):   # pytorch-grad-cam calls it per image on the model's output [K, A]
        return output[cls, cand]
    for name, cam_class in (("gradcam", GradCAM), ("hirescam", HiResCAM)):
        for k, module in enumerate(layers):
            with cam_class(model=net, target_layers=[module]) as cam:
                cam(input_tensor=x, targets=[target])
                a = cam.activations_and_grads.activations[0].numpy()
                g = cam.activations_and_grads.gradients[0].numpy()
                out[f"{name}{k}"] = cam.get_cam_image(x, module, None, a, g, False)[0]
    return out


def check(model, path: Path, view: np.ndarray) -> float:
    """Max |ORT - torch| of the head output on the photo, relative to the output's scale."""
    import torch

    x = view.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = C.ort_logits(path, x)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=C.REPO / "tests" / "fixtures" / "yolo")
    p.add_argument("--arch", choices=sorted(CONFIGS), nargs="*", default=sorted(CONFIGS))
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), nargs="*", default=["torchscript", "dynamo"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    view = letterboxed_view(C.PHOTOS / PHOTO)
    for arch in args.arch:
        model = build(arch, args.seed)
        params = sum(t.numel() for t in model.parameters())
        for exporter in args.exporter:
            path = args.out_dir / f"{arch}_{exporter}.onnx"
            try:
                export(model, path, exporter)
            except Exception as e:   # record what fails, keep the others
                print(f"{arch} {exporter}: export FAILED: {type(e).__name__}: {str(e).splitlines()[0]}")
                continue
            print(f"{C.describe(path)}; {params} parameters, {path.stat().st_size / 1e6:.2f} MB; "
                  f"max |ORT - torch| / max|torch| = {check(model, path, view):.2e}")
        values = golden(model, arch, view)
        np.savez_compressed(args.out_dir / f"{arch}.golden.npz", **values)
        print(f"{arch}: golden values for class {int(values['cls'])} candidate {int(values['candidate'])}, "
              f"logit {float(values['logit']):.4f}")


if __name__ == "__main__":
    main()
