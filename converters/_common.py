"""Helpers shared by the converter scripts (preprocessing, ONNX export, ORT-vs-torch check).

Kept free of import-time side effects: torch is imported lazily inside the functions that
need it, so ``quantize.py`` (ONNX/ORT only) can reuse the preprocessing without torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = REPO / "models"
PHOTOS = MODELS / "photos"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def load_input(path, manifest: dict) -> np.ndarray:
    """One photo as a [1, ...] float32 model input, preprocessed by onnxcam itself as the manifest says.

    Converters reuse the product's preprocessing so an exported model is checked on exactly the
    tensors onnxcam will feed it.
    """
    from onnxcam.preprocess import load_images, spec_from_dict

    return load_images([path], spec_from_dict(manifest))


def read_manifest(model_path) -> dict:
    """Load manifest.json lying next to an ONNX model file."""
    return json.loads((Path(model_path).parent / "manifest.json").read_text())


def photo_paths(folder=PHOTOS) -> list[Path]:
    return sorted(Path(folder).glob("*.jpg"))


def ort_session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ort_logits(path_or_session, x: np.ndarray) -> np.ndarray:
    sess = ort_session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(float16)":  # e.g. an FP16 model made without keep_io_types
        x = x.astype(np.float16)
    return sess.run(None, {inp.name: x})[0]


def torch_export(model, dummy, out, exporter="torchscript", dynamic_batch=True, opset=17,
                 input_name="input", output_name="logits") -> Path:
    """Export ``model`` (already in eval mode) to ONNX with either PyTorch exporter.

    * ``torchscript``: ``dynamo=False`` + ``dynamic_axes``; weights stay inside the .onnx file.
    * ``dynamo``: ``torch.export`` based; ``dynamic_shapes`` marks the batch dimension and the
      weights go to external data ``<out>.data`` (the exporter's default since torch 2.9).
      torch.export specialises size-1 dims, so a dynamic export is traced with batch 2.
      The dynamo exporter builds at opset 18 and its down-conversion to 17 fails
      ("No Adapter To Version $17 for Pad", torch 2.14 / onnx 1.23), so opset < 18 is raised
      to 18 for it.
    """
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if exporter == "torchscript":
        torch.onnx.export(
            model, (dummy,), str(out), dynamo=False, opset_version=opset,
            input_names=[input_name], output_names=[output_name], do_constant_folding=True,
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None,
        )
    elif exporter == "dynamo":
        if opset < 18:
            print(f"note: dynamo exporter cannot target opset {opset} (no Pad adapter); using 18")
            opset = 18
        if dynamic_batch and dummy.shape[0] == 1:
            dummy = dummy.repeat(2, *([1] * (dummy.ndim - 1)))
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
        torch.onnx.export(
            model, (dummy,), str(out), dynamo=True, opset_version=opset, external_data=True,
            input_names=[input_name], output_names=[output_name], dynamic_shapes=shapes,
        )
    else:
        raise ValueError(f"unknown exporter {exporter!r} (torchscript or dynamo)")
    return out


def compare_with_torch(model, onnx_path, x: np.ndarray) -> float:
    """Max |torch logits - ORT logits| on input ``x`` (numpy NCHW float32)."""
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = ort_logits(onnx_path, x)
    if got.shape != ref.shape:
        raise AssertionError(f"shape mismatch: ORT {got.shape} vs torch {ref.shape}")
    return float(np.abs(got - ref).max())


def describe(onnx_path) -> str:
    """One line: opset, node count, input shape, external data files (for logs / reports)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    ops = {d.domain or "ai.onnx": d.version for d in m.opset_import}
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    ext = sorted({e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"})
    return (f"{Path(onnx_path).name}: opset {ops.get('ai.onnx')}, {len(m.graph.node)} nodes, "
            f"input {m.graph.input[0].name}{dims}, external data {ext or 'none'}")
