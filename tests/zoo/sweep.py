"""Coverage of the CNN zoo: timm (and a few torchvision) families, both PyTorch exporters, every method.

Test-only script (torch, timm, torchvision are imported here, never in onnxcam/). For each family and
exporter (TorchScript at opset 17, dynamo at 18), random weights, a small input:
  * the catalog is non-empty and `auto` resolves;
  * every method runs, and its maps are finite and not constant;
  * dS/dA at the auto layer equals PyTorch autograd (ReLU gates aligned to onnxruntime's as in
    tests/test_autograd_parity.py, whose helpers are reused; flipped units are counted apart).
Each export runs in its own subprocess with a timeout, so one hang or crash does not stop the sweep.
Prints a markdown table families x methods (✓ or the short refusal reason) and writes JSON.

    nice python tests/zoo/sweep.py --out /tmp/zoo.json --timeout 600
    python tests/zoo/sweep.py --only resnest14d tf_efficientnetv2_b0 --exporters torchscript
    python tests/zoo/sweep.py --out tests/zoo/results.json --exporters --keras-dir /tmp/keras_apps
    python tests/zoo/sweep.py --out tests/zoo/results.json --table

Keras applications (tf2onnx, NHWC) come from converters/export_keras_apps.py, run in a separate
environment with TensorFlow; their gradients are checked against float64 finite differences.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent

# family -> (builder spec, input size). "tv:" builds a torchvision model, "timm:" a timm model;
# "+fused" reparameterizes a RepVGG-style model before export; after "|" a named variant
# ("cbam": CBAM attention in each block, "shallow": one block per stage).
FAMILIES = {
    "ResNet-D": ("timm:resnet18d", 64),
    "ResNeXt": ("timm:resnext26ts", 64),
    "SE-ResNet": ("timm:seresnet18", 64),
    "ECA-ResNet": ("timm:ecaresnet26t", 64),
    "CBAM-ResNet": ("timm:resnet18|cbam", 64),
    "Res2Net": ("timm:res2net50_14w_8s", 64),
    "ResNeSt": ("timm:resnest14d", 64),
    "RegNetX": ("timm:regnetx_002", 64),
    "RegNetY": ("timm:regnety_002", 64),
    "EfficientNet": ("timm:efficientnet_b0", 64),
    "EfficientNet (TF SAME)": ("timm:tf_efficientnet_b0", 64),
    "EfficientNetV2 (TF SAME)": ("timm:tf_efficientnetv2_b0", 64),
    "MobileNetV2": ("timm:mobilenetv2_050", 64),
    "MobileNetV3": ("timm:mobilenetv3_small_050", 64),
    "MobileNetV4": ("timm:mobilenetv4_conv_small", 64),
    "GhostNet": ("timm:ghostnet_100", 64),
    "RepVGG": ("timm:repvgg_a0", 64),
    "RepVGG (fused)": ("timm:repvgg_a0+fused", 64),
    "DenseNet": ("timm:densenet121", 64),
    "DLA": ("timm:dla34", 64),
    "DPN": ("timm:dpn68", 64),
    "HRNet": ("timm:hrnet_w18_small", 64),
    "CSPNet": ("timm:cspresnet50", 64),
    "DarkNet": ("timm:cs3darknet_s", 64),
    "ConvNeXt": ("timm:convnext_atto", 64),
    "ConvNeXt V2 (GRN)": ("timm:convnextv2_atto", 64),
    "NFNet": ("timm:nf_regnet_b0", 64),
    "ResNetV2/BiT (GroupNorm)": ("timm:resnetv2_50x1_bit", 64),
    "ReXNet": ("timm:rexnet_100", 64),
    "LCNet": ("timm:lcnet_050", 64),
    "MixNet": ("timm:mixnet_s", 64),
    "SelecSLS": ("timm:selecsls42b", 64),
    "Inception-v3": ("timm:inception_v3", 139),
    "Inception-v4": ("timm:inception_v4", 139),
    "GoogLeNet": ("tv:googlenet", 64),
    "SqueezeNet": ("tv:squeezenet1_1", 64),
    "ShuffleNet-V2": ("tv:shufflenet_v2_x0_5", 64),
    "MNASNet": ("timm:mnasnet_100", 64),
    "VGG-BN": ("tv:vgg11_bn", 224),  # its classifier needs 7x7 features
    "Xception": ("timm:xception41", 64),
}
METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigengradcam", "eigencam",
           "scorecam", "cam", "guided-backprop", "lrp", "relevancecam", "srmap"]
EXPORTERS = ["torchscript", "dynamo"]
NUM_CLASSES = 10
PARITY_TOL = 1e-4  # as tests/test_autograd_parity.py: float32 forwards of two runtimes, gates aligned
FD_TOL = 1e-5      # float64 central differences of the Keras exports, 3 random directions at 3 layers,
# on a noise image, at two steps, the better kept: a wrong rule is wrong at both, while a step of
# 1e-5 crosses some of Xception's ~1e5 ReLU kinks at early layers (err 1e-2) and at 1e-7 float64
# rounding in a deep smooth net (EfficientNetV2, derivative 3e-4 along a direction) reaches 2e-5
FD_STEPS = (1e-5, 1e-7)


def build(spec: str, seed: int = 0):
    """The torch model of a family spec, random weights, BN statistics perturbed, eval mode,
    no in-place activations (autograd must see each activation as its own tensor)."""
    import torch

    kind, _, name = spec.partition(":")
    name, _, extra = name.partition("|")
    fused = name.endswith("+fused")
    name = name.removesuffix("+fused")
    torch.manual_seed(seed)
    if kind == "tv":
        import torchvision
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kwargs)
    else:
        import timm
        if extra == "shallow":  # BiT's recipe (timm resnetv2.py): StdConv + GroupNorm, one block a stage
            from functools import partial
            from timm.layers import StdConv2d
            from timm.models.resnetv2 import ResNetV2
            model = ResNetV2(layers=[1, 1, 1, 1], num_classes=NUM_CLASSES, stem_type="fixed",
                             conv_layer=partial(StdConv2d, eps=1e-8))
        else:
            kwargs = {"block_args": {"attn_layer": "cbam"}} if extra == "cbam" else {}
            model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    if fused:
        from timm.utils.model import reparameterize_model
        model = reparameterize_model(model)
    for m in model.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False
    return model


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def matching_module(net, x, activation):
    """Name of the last torch module whose output equals this ONNX activation (by value)."""
    import numpy as np
    import torch

    found = []
    scale = max(float(np.abs(activation).max()), 1e-6)

    def hook(mod, inp, out, name=None):
        if isinstance(out, torch.Tensor) and tuple(out.shape) == activation.shape:
            if np.abs(out.detach().numpy() - activation).max() <= 1e-4 * scale:
                found.append(name)
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name))
             for name, m in net.named_modules() if name]
    try:
        with torch.no_grad():
            net(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    return found[-1] if found else None


def parity(spec, ex, x):
    """Max relative error of dS/dA at the auto layer against autograd, and ReLU units flipped."""
    import numpy as np
    sys.path.insert(0, str(TESTS))
    from gateflips import aligned_gates, assert_same_run, last_explain_graph, onnx_gates
    from onnxcam.graph.backward import SEED
    from test_autograd_parity import torch_gradients

    layer = ex.model.resolve_layers("auto")[0]
    seed = np.random.default_rng(0).normal(size=(len(x), ex.model.num_classes)).astype(np.float32)
    _, _, onnx_acts, grads = ex.gradients(x, ex.layers, target=seed)
    net = build(spec)
    module = matching_module(net, x, onnx_acts[layer.name])
    if module is None:
        return {"parity": "no torch module holds the auto layer's values"}
    graph, batch = last_explain_graph(ex)
    gates = onnx_gates(graph, {ex.model.input_name: x, SEED: seed}, batch)
    if any(g.tensor in onnx_acts for g in gates):
        assert_same_run(gates, onnx_acts)
    # else (nf_regnet_b0 through dynamo: its only gates are the ReLUs inside squeeze-excitation,
    # 1x1 tensors outside the catalog) there is nothing to compare; the gates come from a run
    # of the same explain graph on the same feeds all the same
    with aligned_gates(gates) as flips:   # torch takes onnxruntime's gate decisions (gateflips.py)
        _, ref = torch_gradients(net, x, [module], seed)
    g_ref = ref[module][1]
    err = float(np.abs(grads[layer.name] - g_ref).max() / max(np.abs(g_ref).max(), 1e-30))
    unexplained = len(flips.unexplained) + len(flips.unmatched)
    ok = err <= PARITY_TOL and not unexplained
    return {"parity_err": err, "flips": int(flips.total), "module": module,
            "parity": "✓" if ok else f"rel err {err:.1e} ({flips.report()})"}


def run_one(family: str, exporter: str, workdir: Path, spec: tuple | None = None,
            methods=METHODS) -> dict:
    """Everything for one export (runs in the child process). spec: (builder spec, size) instead
    of the family's own; methods: a subset of METHODS (the suite's fast tier)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "converters"))
    import _common as C
    import onnxcam
    import torch

    spec, size = spec or FAMILIES[family]
    row = {"family": family, "spec": spec, "exporter": exporter, "size": size}
    t0 = time.time()
    x1 = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    try:
        path = C.torch_export(build(spec), torch.from_numpy(x1), workdir / "model.onnx", exporter=exporter,
                              dynamic_batch=True, opset=17 if exporter == "torchscript" else 18)
    except Exception as exc:  # the exporter's own failure is not onnxcam's
        row["export"] = f"export failed: {short(exc)}"
        return row
    row["export_s"] = round(time.time() - t0, 1)
    try:
        ex = onnxcam.Explainer(path)
    except Exception as exc:
        row["catalog"] = short(exc)
        return row
    if not catalog(ex, row):
        return row
    x = explain_all(ex, row, methods)
    try:
        row.update(parity(spec, ex, x))
    except Exception as exc:
        row["parity"] = short(exc)
    row["total_s"] = round(time.time() - t0, 1)
    return row


def catalog(ex, row: dict) -> bool:
    """Catalog size, auto layer and op types into the row; False (with the reason) if it fails."""
    try:
        row["catalog"] = len(ex.layers)
        row["auto"] = ex.model.resolve_layers("auto")[0].name
        row["ops"] = sorted({node.op_type for node in ex.model.proto.graph.node})
        return True
    except Exception as exc:
        row["catalog"] = short(exc)
        return False


def explain_all(ex, row: dict, methods=METHODS):
    """Every method on one photo: "✓" when each map is finite and not constant, else the reason.
    Returns the input it used."""
    import numpy as np
    import onnxcam

    photos = sorted((ROOT / "models" / "photos").glob("*.jpg"))[:1]
    x = onnxcam.load_images(photos, ex.preprocess)
    row["methods"] = {}
    for method in methods:
        options = {"top_k": 4} if method == "scorecam" else {}
        t = time.time()
        try:
            result = ex.explain(x, method, **options)
            bad = [name for name, m in result.maps.items()
                   if not np.all(np.isfinite(m)) or float(np.ptp(m)) == 0.0]
            row["methods"][method] = "✓" if not bad else f"constant or non-finite map at {bad[0]}"
        except Exception as exc:
            row["methods"][method] = short(exc)
        row.setdefault("method_s", {})[method] = round(time.time() - t, 1)
    return x


def noise_image(spec, seed: int = 0):
    """One image of uniform random pixels, preprocessed as `spec` says. Finite differences need
    it: a photo's flat regions give equal values in a MaxPool window, a tie whose one-sided
    derivatives differ (the gradient takes one, central differences their mean)."""
    import numpy as np

    h, w = spec.size
    shape = (1, h, w, 3) if spec.layout == "NHWC" else (1, 3, h, w)
    axis = (1, 1, 1, 3) if spec.layout == "NHWC" else (1, 3, 1, 1)
    pixels = np.random.default_rng(seed).uniform(0, 255, shape)
    mean, std = (np.broadcast_to(np.asarray(v, float), 3).reshape(axis) for v in (spec.mean, spec.std))
    return ((pixels * spec.scale - mean) / std).astype(np.float32)


def run_keras(path: Path, methods=METHODS, directions: int = 3) -> dict:
    """Everything for one tf2onnx export of a Keras application (runs in the child process): the
    catalog, every method, and dS/dA at the auto layer, the catalog's middle and its second layer
    (after the first, the input's Transpose or the Rescaling) against float64 finite differences
    of the model itself (tests/modelcheck.py: no framework runs the export's backward pass here)."""
    sys.path.insert(0, str(TESTS))
    import numpy as np
    import onnxcam
    from modelcheck import check_layer_gradient

    path = Path(path)
    row = {"family": f"Keras {path.stem}", "spec": f"keras:{path.stem}", "exporter": "tf2onnx"}
    t0 = time.time()
    ex = onnxcam.Explainer(path)  # preprocessing from the sidecar export_keras_apps.py wrote beside it
    row["size"] = list(ex.preprocess.size)
    if not catalog(ex, row):
        return row
    x = explain_all(ex, row, methods)
    layers = [layer.name for layer in ex.layers]
    picks = {"auto": row["auto"], "middle": layers[len(layers) // 2], "early": layers[min(1, len(layers) - 1)]}
    try:
        x = noise_image(ex.preprocess)
        seed = np.random.default_rng(0).normal(size=(len(x), ex.model.num_classes))
        row["fd_layers"] = {pick: min(check_layer_gradient(ex, x, name, seed, directions=directions,
                                                           rtol=np.inf, h=h, floor=1e-3) for h in FD_STEPS)
                            for pick, name in picks.items()}
        err = row["fd_err"] = max(row["fd_layers"].values())
        row["parity"] = "✓" if err <= FD_TOL else f"rel err {err:.1e} against finite differences"
    except Exception as exc:
        row["parity"] = short(exc)
    row["total_s"] = round(time.time() - t0, 1)
    return row


def child(family, exporter, out):
    with tempfile.TemporaryDirectory(prefix="zoo_") as tmp:
        row = run_one(family, exporter, Path(tmp))
    Path(out).write_text(json.dumps(row))


def child_keras(path, out):
    Path(out).write_text(json.dumps(run_keras(Path(path))))


def jobs(families, exporters, keras_dir: Path | None):
    """(family, exporter, child arguments or the finished row) of every export the sweep would run."""
    out = [(f, e, ["--child", f, e]) for f in families for e in exporters]
    for meta in sorted(Path(keras_dir).glob("*.json")) if keras_dir else []:
        family, model = f"Keras {meta.stem}", meta.with_suffix(".onnx")
        if model.exists():
            out.append((family, "tf2onnx", ["--child-keras", str(model)]))
        else:  # export_keras_apps.py wrote why it has no model
            refusal = json.loads(meta.read_text()).get("export", "no model written")
            out.append((family, "tf2onnx", {"family": family, "spec": f"keras:{meta.stem}",
                                            "exporter": "tf2onnx", "export": refusal}))
    return out


def sweep(todo, timeout, out_json: Path, deadline: float | None):
    rows = json.loads(out_json.read_text()) if out_json.exists() else []
    done = {(r["family"], r["exporter"]) for r in rows}
    for family, exporter, args in todo:
        if (family, exporter) in done:
            continue
        if deadline and time.time() > deadline:
            print(f"deadline reached before {family}/{exporter}", flush=True)
            return rows
        if isinstance(args, dict):  # known without running anything (an export that failed)
            rows.append(args)
            continue
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            result_file = Path(f.name)
        t = time.time()
        cmd = [sys.executable, __file__, *args, str(result_file)]
        try:
            done_proc = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
            if result_file.stat().st_size:
                row = json.loads(result_file.read_text())
            else:
                tail = (done_proc.stderr.strip().splitlines() or ["?"])[-1]
                row = {"family": family, "exporter": exporter,
                       "catalog": f"crash (exit {done_proc.returncode}): {tail[:120]}"}
        except subprocess.TimeoutExpired:
            row = {"family": family, "exporter": exporter, "catalog": f"timeout after {timeout} s"}
        result_file.unlink(missing_ok=True)
        row["wall_s"] = round(time.time() - t, 1)
        rows.append(row)
        out_json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
        print(f"{family}/{exporter}: {row.get('wall_s')} s, parity {row.get('parity', '-')}, "
              f"failed: {[m for m, v in row.get('methods', {}).items() if v != '✓']}", flush=True)
    return rows


ORDER = {"torchscript": 0, "dynamo": 1, "tf2onnx": 2}


def reason(text: str) -> str:
    """A refusal without the tensor and node names each exporter gives differently, so one cause
    is one footnote: quoted names become …, a truncated tail is dropped."""
    import re

    text = re.sub(r"'[^'\s]*'", "…", text)
    if text.endswith("..."):
        text = re.sub(r"[;,:]?[^;,:]*\.\.\.$", "", text)
    return text.removesuffix("; use scorecam or eigencam")


def table(rows) -> str:
    """Markdown: one row per family and exporter in FAMILIES' order (Keras last), one column per
    method: ✓ or a numbered refusal whose reason is listed under the table; the last column is
    the gradient check (largest relative error against autograd, or finite differences for tf2onnx)."""
    place = {f: i for i, f in enumerate(FAMILIES)}
    rows = sorted(rows, key=lambda r: (place.get(r["family"], len(place)), r["family"],
                                       ORDER.get(r["exporter"], 9)))
    reasons: dict[str, int] = {}

    def cell(value) -> str:
        if value == "✓":
            return "✓"
        if value in (None, "-"):
            return "-"
        number = reasons.setdefault(reason(str(value)), len(reasons) + 1)
        return f"✗ [{number}]"

    head = ["family", "model", "exporter", "catalog"] + [f"`{m}`" for m in METHODS] + ["dS/dA"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cat = r.get("catalog", r.get("export", "-"))
        cells = [r["family"], f"`{r.get('spec', '').split(':')[-1]}`", r["exporter"],
                 f"✓ ({cat})" if isinstance(cat, int) and cat > 0 else cell(str(cat))]
        cells += [cell(r.get("methods", {}).get(m, "-")) for m in METHODS]
        err, kind = (r["fd_err"], "FD") if "fd_err" in r else (r.get("parity_err"), "autograd")
        check = r.get("parity", "-")
        cells.append(f"✓ ({kind} {err:.0e})" if check == "✓" and err is not None else cell(check))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines += [f"[{n}] {text}" for text, n in reasons.items()]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("FAMILY", "EXPORTER", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-keras", nargs=2, metavar=("ONNX", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", help="family names or model names to run (default: all)")
    ap.add_argument("--exporters", nargs="*", default=EXPORTERS, choices=EXPORTERS,
                    help="PyTorch exporters to run (none: `--exporters` alone, e.g. with --keras-dir)")
    ap.add_argument("--keras-dir", type=Path, help="also sweep the tf2onnx exports in this folder "
                    "(converters/export_keras_apps.py writes them, with their preprocessing beside)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per export (default 600)")
    ap.add_argument("--budget", type=float, default=None, help="start no export after this many seconds")
    ap.add_argument("--out", default="zoo_sweep.json", help="JSON results (resumed if it exists)")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out")
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)
    if args.child_keras:
        return child_keras(*args.child_keras)
    out = Path(args.out)
    if args.table:
        print(table(json.loads(out.read_text())))
        return
    families = [f for f in FAMILIES if not args.only or f in args.only
                or FAMILIES[f][0].split(":")[-1] in args.only]
    deadline = time.time() + args.budget if args.budget else None
    rows = sweep(jobs(families, args.exporters, args.keras_dir), args.timeout, out, deadline)
    print(table(rows))


if __name__ == "__main__":
    main()
