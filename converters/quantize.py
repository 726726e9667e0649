"""Make FP16 / INT8 variants of an FP32 ONNX classifier (for testing explainers on them).

Why: deployed models are often quantized, and an explainer that rewrites graphs must cope with
Cast nodes (FP16 with FP32 I/O) and QuantizeLinear/DequantizeLinear pairs (QDQ INT8) or
MatMulInteger/ConvInteger (dynamic INT8). This script makes those variants with ONNX Runtime's
own tools and reports how often their top-1 agrees with the FP32 model on the real photos.

* ``--fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16``, by default with
  ``keep_io_types=True`` (inputs/outputs stay float32; ``--no-keep-io`` makes them float16).
* ``--int8-static``: ``quant_pre_process`` (shape inference + ORT graph optimisation, which folds
  exporter constant chains) then ``quantize_static`` in QDQ format, per-channel weights,
  MinMax calibration on the photos in models/photos, preprocessed as the model's manifest says.
* ``--int8-dynamic``: ``quant_pre_process`` then ``quantize_dynamic`` (weights quantized
  offline as uint8, activations at run time -> ConvInteger/MatMulInteger). uint8 weights
  because that is what ORT's CPU ConvInteger kernel has long supported (and it measured
  better than int8 here). Expect poor agreement on depthwise-conv nets: per-tensor dynamic
  activation ranges hurt them.

Example (quantized files are for local checks; do not commit them)::

    python converters/quantize.py models/efficientnet_lite0/model.onnx --fp16 --int8-static \\
        --int8-dynamic --out-dir /tmp/quant

Outputs ``<stem>.fp16.onnx`` (``<stem>.fp16_io.onnx`` with ``--no-keep-io``),
``<stem>.int8_static.onnx``, ``<stem>.int8_dynamic.onnx``.
Importable: ``to_fp16``, ``to_int8_static``, ``to_int8_dynamic``, ``top1_agreement``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402
from onnxcam.postprocess import softmax  # noqa: E402


def _inputs(manifest, photos=None):
    """Preprocessed photos (each 1xCxHxW float32) following ``manifest``."""
    paths = C.photo_paths(photos or C.PHOTOS)
    if not paths:
        raise FileNotFoundError(f"no *.jpg photos in {photos or C.PHOTOS}")
    return [C.load_input(p, manifest) for p in paths]


def to_fp16(src, dst, keep_io_types=True):
    """FP16 weights/activations; with keep_io_types the graph I/O stay float32 (Cast at the edges)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    model = convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(model, str(dst))
    return Path(dst)


class _PhotoReader:
    """CalibrationDataReader over the preprocessed photos (duck-typed: get_next / rewind)."""

    def __init__(self, input_name, tensors):
        self.input_name, self.tensors, self.i = input_name, tensors, 0

    def get_next(self):
        if self.i >= len(self.tensors):
            return None
        self.i += 1
        return {self.input_name: self.tensors[self.i - 1]}

    def rewind(self):
        self.i = 0


def _pre_process(src, dst):
    """quant_pre_process; retried without symbolic shape inference, which asserts on some
    paddle2onnx graphs (e.g. rapidocr's cls model: Concat on a non-0 axis in a shape chain)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # noqa: BLE001 - any failure of the optional symbolic pass
        print(f"note: symbolic shape inference failed ({type(exc).__name__}); retrying without it")
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _ensure_opset(path, minimum):
    """Per-channel QDQ needs DequantizeLinear's ``axis`` (opset 13); paddle2onnx exports are
    opset 11 and the quantizer would otherwise write an invalid model. Upgrade in place."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < minimum:
        print(f"note: upgrading opset {current} -> {minimum} before quantization")
        onnx.save(version_converter.convert_version(model, minimum), str(path))


def to_int8_static(src, dst, manifest=None, photos=None, per_channel=True):
    """QDQ INT8 (per-channel weights, int8 activations) calibrated on the real photos."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    manifest = manifest or C.read_manifest(src)
    tensors = _inputs(manifest, photos)
    input_name = C.ort_session(src).get_inputs()[0].name
    reader = type("PhotoReader", (_PhotoReader, CalibrationDataReader), {})(input_name, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        _pre_process(src, pre)
        _ensure_opset(pre, 13 if per_channel else 10)
        quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
    return Path(dst)


def to_int8_dynamic(src, dst):
    """Dynamic INT8: weights quantized offline (uint8), activations at run time.

    ``quant_pre_process`` first, as for static: it folds the exporter's constant chains
    (EfficientNet-Lite0: 456 -> 94 nodes), which otherwise only produce warnings.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        _pre_process(src, pre)
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QUInt8)
    return Path(dst)


def top1_agreement(ref_model, other_model, manifest=None, photos=None):
    """Fraction of photos where both models have the same top-1, plus per-photo rows
    (photo, ref top-1, ref p, other top-1, other p of the ref top-1, max |output difference|)."""
    import numpy as np

    manifest = manifest or C.read_manifest(ref_model)
    paths = C.photo_paths(photos or C.PHOTOS)
    ref_s, oth_s = C.ort_session(ref_model), C.ort_session(other_model)
    rows = []
    for p, x in zip(paths, _inputs(manifest, photos)):
        a = np.asarray(C.ort_logits(ref_s, x), np.float32)[0]
        b = np.asarray(C.ort_logits(oth_s, x), np.float32)[0]
        pa, pb = (a, b) if manifest.get("outputs") == "probabilities" else (softmax(a), softmax(b))
        rows.append((p.stem, int(pa.argmax()), float(pa.max()), int(pb.argmax()), float(pb[pa.argmax()]),
                     float(np.abs(a - b).max())))
    agree = sum(r[1] == r[3] for r in rows) / len(rows)
    return agree, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="FP32 .onnx model (manifest.json expected next to it)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--no-keep-io", action="store_true", help="FP16 inputs/outputs too")
    ap.add_argument("--int8-static", action="store_true")
    ap.add_argument("--int8-dynamic", action="store_true")
    ap.add_argument("--photos", default=str(C.PHOTOS), help="calibration / agreement photos (*.jpg)")
    ap.add_argument("--manifest", help="manifest.json (default: next to the model)")
    ap.add_argument("-v", "--verbose", action="store_true", help="keep ORT quantizer warnings")
    args = ap.parse_args(argv)

    import json
    import logging

    if not args.verbose:  # the ORT quantizer logs one warning per non-float tensor
        logging.getLogger().setLevel(logging.ERROR)

    src = Path(args.model)
    manifest = json.loads(Path(args.manifest).read_text()) if args.manifest else C.read_manifest(src)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    if args.fp16:
        name = f"{src.stem}.fp16{'_io' if args.no_keep_io else ''}.onnx"
        made.append(to_fp16(src, out / name, keep_io_types=not args.no_keep_io))
    if args.int8_static:
        made.append(to_int8_static(src, out / f"{src.stem}.int8_static.onnx", manifest, args.photos))
    if args.int8_dynamic:
        made.append(to_int8_dynamic(src, out / f"{src.stem}.int8_dynamic.onnx"))
    if not made:
        ap.error("nothing to do: pass --fp16, --int8-static and/or --int8-dynamic")
    for path in made:
        agree, rows = top1_agreement(src, path, manifest, args.photos)
        print(f"{C.describe(path)}; size {path.stat().st_size / 1e6:.2f} MB; "
              f"top-1 agreement with FP32 {agree:.0%}")
        for name, t_ref, p_ref, t_q, p_q, d in rows:
            print(f"   {name:18s} fp32 {t_ref:4d} p={p_ref:.4f} | variant {t_q:4d} "
                  f"p(fp32 top-1)={p_q:.4f} | max |output diff| {d:.3g}")


if __name__ == "__main__":
    main()
