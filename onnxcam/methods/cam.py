"""CAM (Zhou et al., CVPR 2016): w_k = W_fc[c, k] read in closed form from a GAP -> FC head."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxCamError
from .base import EIGEN_SMOOTH, Method, Request, eigen_smooth, register, weighted_sum

_PASS = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout"}
_GAP = {"GlobalAveragePool"}


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    return None


def head_weights(model, layer_name: str, layout: str = "NCHW") -> tuple[np.ndarray, np.ndarray]:
    """(W [K, C], b [K]) of the linear head after global average pooling of `layer_name`, whose
    tensor is in `layout` (tf2onnx's Keras heads average an NHWC tensor over axes 1, 2).

    Raises OnnxCamError naming the node where the path stops being GAP -> FC.
    """
    proto = model.proto
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def only_consumer(tensor):
        users = consumers.get(tensor, [])
        if len(users) != 1:
            raise OnnxCamError(f"CAM needs a GAP -> fully-connected head after layer {layer_name!r}, but "
                               f"{tensor!r} feeds {len(users)} nodes; use scorecam or eigencam")
        return users[0]

    def fail(node):
        raise OnnxCamError(f"CAM needs a GAP -> fully-connected head after layer {layer_name!r}; found "
                           f"{node.op_type} node {node.name!r} instead; use scorecam or eigencam")

    node = only_consumer(layer_name)
    is_gap = node.op_type in _GAP or (node.op_type == "ReduceMean" and _spatial_mean(proto, node, layout))
    if not is_gap:
        fail(node)
    tensor = node.output[0]
    node = only_consumer(tensor)
    while node.op_type in _PASS:
        tensor, node = node.output[0], only_consumer(node.output[0])
    w, b = _linear(proto, node)
    if w is None:
        fail(node)
    tensor = node.output[0]
    if node.op_type == "MatMul" and tensor != model.score_name:
        nxt = only_consumer(tensor)
        extra = _const(proto, nxt.input[1]) if nxt.op_type == "Add" else None
        if extra is None:
            fail(nxt)
        b, tensor = extra.reshape(-1), nxt.output[0]
    while tensor != model.score_name:
        node = only_consumer(tensor)
        if node.op_type not in _PASS:
            fail(node)
        tensor = node.output[0]
    return w.astype(np.float32), (np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32))


def _spatial_mean(proto, node, layout: str) -> bool:
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1:
        axes = _const(proto, node.input[1])
        axes = None if axes is None else list(axes)
    return axes is not None and {a % 4 for a in axes} == ({1, 2} if layout == "NHWC" else {2, 3})


def _linear(proto, node) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Weights [K, C] and bias of a Gemm, MatMul or 1x1 Conv used as the classifier."""
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("transA") and attrs["transA"].i:
            return None, None
        w = _const(proto, node.input[1])
        if w is None:
            return None, None
        w = w if attrs.get("transB") and attrs["transB"].i else w.T
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        b = _const(proto, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return alpha * w, (None if b is None else beta * b.reshape(-1))
    if node.op_type == "MatMul":
        w = _const(proto, node.input[1])
        return (None, None) if w is None or w.ndim != 2 else (w.T, None)
    if node.op_type == "Conv":
        w = _const(proto, node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if w is None or w.shape[2:] != (1, 1) or group != 1:
            return None, None
        b = _const(proto, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return w[:, :, 0, 0], b
    return None, None


def _compute(req: Request) -> dict[str, np.ndarray]:
    out = {}
    for layer in req.layers:
        w, _ = head_weights(req.explainer.model, layer.name, layer.layout)
        if w.shape[1] != layer.channels:
            raise OnnxCamError(f"CAM head weights have {w.shape[1]} inputs but layer {layer.name!r} has "
                               f"{layer.channels} channels")
        req.weights[layer.name] = w[req.targets]
        out[layer.name] = weighted_sum(w[req.targets], req.activations[layer.name], eigen_smooth(req))
    return out


CAM = register(Method("cam", "CAM", "Zhou et al., Learning Deep Features for Discriminative "
                      "Localization, CVPR 2016", _compute, options=(EIGEN_SMOOTH,)))
