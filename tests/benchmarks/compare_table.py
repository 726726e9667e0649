"""README's deployment table: how far each build of the bundled model strays from the FP32 reference.

Builds: FP16 (float32 I/O and float16 I/O), static INT8 QDQ (calibrated on the bundled photos),
dynamic INT8 (all made by converters/quantize.py), and a re-export of the same network by PyTorch's
dynamo exporter (the bundled file is TorchScript; skipped when torch or the weight package is
missing). Each is compared with `onnxcam.compare` on the six bundled photos at the auto layer:
top-1 agreement, the largest logit change, and per method the mean map Pearson and top-20% IoU.

    python tests/benchmarks/compare_table.py [--methods gradcam,scorecam,relevancecam]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchtools import PHOTOS, ROOT, print_table

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


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
    ap.add_argument("--methods", default="gradcam,scorecam,relevancecam")
    methods = [m for m in ap.parse_args().methods.split(",") if m]
    folder = Path(tempfile.mkdtemp())
    rows = []
    for name, path in builds(folder).items():
        cells, summary = [], None
        for method in methods:
            t = time.perf_counter()
            try:
                out = onnxcam.compare(LITE0, path, PHOTOS, method=method)
            except onnxcam.OnnxCamError as exc:
                print(f"{name} / {method}: {exc}")
                cells.append("refused")
                continue
            summary = out["summary"]
            layer = next(iter(summary["layers"].values()))
            cells.append(f"{layer['mean_pearson']:.3f} / {layer['mean_iou']:.2f}")
            print(f"{name} / {method}: {time.perf_counter() - t:.1f} s")
        scores = [f"{summary['top1_agreement'] * 100:.0f}%", f"{summary['max_abs_score_delta']:.3f}"] \
            if summary else ["–", "–"]
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))  # + external data
        rows.append([name, f"{size / 1e6:.1f}"] + scores + cells)
    print_table(f"EfficientNet-Lite0 builds vs the FP32 reference, {len(PHOTOS)} photos, auto layer "
                "(map Pearson / top-20% IoU)",
                ["build", "MB", "top-1 agreement", "largest logit change"] + [f"{m}" for m in methods], rows)


if __name__ == "__main__":
    main()
