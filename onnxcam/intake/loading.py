"""Load an .onnx file safely.

Why this is more than `onnx.load`: a hostile model can name external-data files outside its own
folder (absolute paths, `..`, symlinks; ONNX had CVEs for exactly this), and a truncated or
non-ONNX file makes protobuf raise messages no user can act on. Here every such case becomes one
`OnnxCamError` line, and external data is read only from inside the model's folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from ..errors import OnnxCamError, first_line
from ..files import check_regular, confine, read_bytes


def load_model(source) -> onnx.ModelProto:
    """Return a ModelProto from a path or a ModelProto, with external data loaded safely."""
    if isinstance(source, onnx.ModelProto):
        _check_has_graph(source, "the given ModelProto")
        if any(uses_external_data(t) for t in _all_initializers(source)):
            raise OnnxCamError("the given ModelProto refers to external data files; "
                               "pass the .onnx path instead so they can be found next to it")
        model = onnx.ModelProto()
        model.CopyFrom(source)  # intake edits the graph; never the caller's object
        return model
    if not isinstance(source, (str, os.PathLike)):
        raise OnnxCamError(f"model must be a path to an .onnx file or an onnx.ModelProto, "
                           f"got {type(source).__name__}")
    path = Path(source)
    data = read_bytes(path, "model", "model file")
    if not data:
        raise OnnxCamError(f"{path} is empty: re-export or re-download the model")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OnnxCamError(f"{path} is not a readable ONNX model (truncated or not ONNX: "
                           f"{type(exc).__name__}); re-export or re-download it") from None
    _check_has_graph(model, str(path))
    _load_external_data(model, path)
    return model


def _check_has_graph(model: onnx.ModelProto, what: str) -> None:
    if not model.HasField("graph") or len(model.graph.node) == 0 or model.ir_version == 0:
        raise OnnxCamError(f"{what} is not an ONNX model with a graph (truncated or not ONNX); "
                           "re-export or re-download it")


def _all_initializers(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    tensors = [t for t in _all_initializers(model) if uses_external_data(t)]
    if not tensors:
        return
    folder = path.resolve().parent
    for tensor in tensors:
        info = {e.key: e.value for e in tensor.external_data}
        what = f"external data location of tensor {tensor.name!r}"
        location = info.get("location", "")
        target = confine(location, folder, what, path)
        size = check_regular(target, f"external data file {location!r} of tensor {tensor.name!r}")
        offset = _byte_count(info, "offset", tensor.name, path)
        length = _byte_count(info, "length", tensor.name, path)
        if offset + length > size or offset > size:
            raise OnnxCamError(f"external data file {location} for tensor {tensor.name!r} is "
                               f"shorter than the model says ({size} < {offset + length} bytes): "
                               "copy the complete file next to the model")
    try:
        load_external_data_for_model(model, str(folder))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise OnnxCamError(f"cannot read external data of {path}: {first_line(exc)}") from None


def _byte_count(info: dict, key: str, tensor_name: str, path: Path) -> int:
    """An external-data offset or length: a non-negative decimal integer (0 when absent)."""
    text = info.get(key, "") or "0"
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise OnnxCamError(f"external data {key} {text[:40]!r} of tensor {tensor_name!r} in {path} "
                           "is not a byte count (a non-negative integer); re-save the model")
    return int(text)
