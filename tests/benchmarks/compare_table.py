"""README's deployment table: how far each build of the bundled model strays from the FP32 reference.

Builds: FP16 (float32 I/O and float16 I/O), static INT8 QDQ (calibrated on the bundled photos),
dynamic INT8 (all made by converters/quantize.py), and a re-export of the same network by PyTorch's
dynamo exporter (the bundled file is TorchScript; skipped when torch or the weight package is
missing). Each is compared with `onnxcam.compare` on the six bundled photos at the auto layer:
top-1 agreement, the largest logit change, and per method the mean map Pearson and top-20% IoU
(`lrp`: the pixel relevance). A second table gives each build's worst image per method and the
worst activation Pearson over all matched layers; a third the production Paddle classifier's
FP16 and static INT8 builds. These figures depend on the quantizer (its calibration changes
between onnxruntime releases), so the tests do not assert them: this script prints them.

    python tests/benchmarks/compare_table.py [--methods gradcam,scorecam,relevancecam,lrp]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchtools import PHOTOS, ROOT, print_table

import onnxcam  # noqa: E402
from onnxcam.intake.matching import match_layers  # noqa: E402
from onnxcam.metrics import pearson  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"
PADDLE_CLS = ROOT / "models" / "rapidocr_cls" / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


def worst_activation_pearson(ref: onnxcam.Explainer, path: Path) -> tuple[float, str]:
    """The lowest Pearson of matched activations over every layer (two photos): how far the
    build's feature maps stray where they stray most."""
    cand = onnxcam.Explainer(path, preprocess=ref.preprocess)
    matches = match_layers(ref.model, cand.model)
    x = onnxcam.load_images([p for p in PHOTOS if p.stem in ("chelsea", "coffee")], ref.preprocess)
    names = [l.name for l in ref.layers]
    _, a = ref.forward(x, names)
    _, b = cand.forward(x, [matches[n].candidate for n in names])
    return min((pearson(a[n], b[matches[n].candidate]), n) for n in names)


def paddle_table() -> None:
    from quantize import to_fp16, to_int8_static

    folder = Path(tempfile.mkdtemp())
    ref = onnxcam.Explainer(PADDLE_CLS)
    rows = []
    for name, path in (("FP16", to_fp16(PADDLE_CLS, folder / "fp16.onnx")),
                       ("INT8 static QDQ", to_int8_static(PADDLE_CLS, folder / "int8.onnx"))):
        cand = onnxcam.Explainer(path, preprocess=ref.preprocess)
        matched = sum(bool(m.candidate) for m in match_layers(ref.model, cand.model).values())
        out = onnxcam.compare(ref, cand, PHOTOS, method="gradcam")
        layer = next(iter(out["summary"]["layers"].values()))
        rows.append([name, f"{matched}/{len(ref.layers)}", f"{out['summary']['top1_agreement'] * 100:.0f}%",
                     f"{layer['mean_pearson']:.3f} / {layer['mean_iou']:.2f}", f"{layer['min_pearson']:.3f}"])
    print_table(f"Paddle text-orientation classifier builds vs its FP32 model, {len(PHOTOS)} photos, "
                "Grad-CAM at the auto layer", ["build", "layers matched", "top-1 agreement",
                                               "map Pearson / top-20% IoU", "worst image Pearson"], rows)


def builds(folder: Path) -> dict[str, Path]:
    from quantize import to_fp16, to_int8_dynamic, to_int8_static

    logging.getLogger().setLevel(logging.ERROR)  # the ORT quantizer warns once per tensor
    out = {"FP16 (float32 I/O)": to_fp16(LITE0, folder / "fp16.onnx"),
           "FP16 (float16 I/O)": to_fp16(LITE0, folder / "fp16_io.onnx", keep_io_types=False),
           "INT8 static QDQ": to_int8_static(LITE0, folder / "int8_static.onnx"),
           "INT8 dynamic": to_int8_dynamic(LITE0, folder / "int8_dynamic.onnx")}
    try:
        from export_efficientnet_lite0 import export
        export(folder / "dynamo" / "model.onnx", exporter="dynamo")
        out["FP32 dynamo re-export"] = folder / "dynamo" / "model.onnx"
    except ImportError as exc:
        print(f"note: no dynamo re-export ({exc})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="gradcam,scorecam,relevancecam,lrp")
    ap.add_argument("--no-paddle", action="store_true", help="skip the Paddle classifier's builds")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    folder = Path(tempfile.mkdtemp())
    ref = onnxcam.Explainer(LITE0)
    rows, worst_rows = [], []
    for name, path in builds(folder).items():
        cells, worst, summary = [], [], None
        for method in methods:
            t = time.perf_counter()
            try:
                out = onnxcam.compare(ref, path, PHOTOS, method=method)
            except onnxcam.OnnxCamError as exc:
                print(f"{name} / {method}: {exc}")
                cells.append("refused")
                worst.append("refused")
                continue
            summary = out["summary"]
            layer = next(iter(summary["layers"].values()))
            cells.append(f"{layer['mean_pearson']:.3f} / {layer['mean_iou']:.2f}")
            worst.append(f"{layer['min_pearson']:.3f}")
            print(f"{name} / {method}: {time.perf_counter() - t:.1f} s")
        scores = [f"{summary['top1_agreement'] * 100:.0f}%", f"{summary['max_abs_score_delta']:.3f}"] \
            if summary else ["–", "–"]
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))  # + external data
        rows.append([name, f"{size / 1e6:.1f}"] + scores + cells)
        act, act_layer = worst_activation_pearson(ref, path)
        worst_rows.append([name] + worst + [f"{act:.3f} ({act_layer})"])
    print_table(f"EfficientNet-Lite0 builds vs the FP32 reference, {len(PHOTOS)} photos, auto layer "
                "(map Pearson / top-20% IoU)",
                ["build", "MB", "top-1 agreement", "largest logit change"] + [f"{m}" for m in methods], rows)
    print_table("Worst image's map Pearson per method, and the worst matched activation Pearson over "
                f"all {len(ref.layers)} layers (chelsea + coffee)",
                ["build"] + methods + ["worst activation Pearson (layer)"], worst_rows)
    if not args.no_paddle:
        paddle_table()


if __name__ == "__main__":
    main()
