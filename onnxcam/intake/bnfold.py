"""Where each convolution's bias came from, for rules that treat a conv and its BatchNorm apart.

Relevance-CAM's authors (mongeoroo/Relevance-CAM, modules/layers.py and modules/resnet.py) apply
z⁺ to the convolution alone, its own bias in both partial sums, and pass relevance through the
BatchNorm that follows unchanged. An export folds that BN into the conv: W' = s·W, b' = s·b + t
with s = γ/√(σ²+ε) and t = β − μ·s per output channel. Since z⁺ is invariant to a positive
per-channel scale, the authors' rule on (W, b) equals z⁺ on (W', s·b) = (W', b' − t); a negative s
swaps which half of W' plays W⁺. So each conv needs its own bias (in folded units) and the sign of s.

- Intake sees the BN (dynamo with optimize=False, Paddle, hand-made graphs; onnxruntime folds it
  during canonicalization): exact. The fused conv keeps the BN's output name.
- The exporter folded it already (the TorchScript exporter names the new constants `onnx::Conv_N`;
  the dynamo exporter's optimizer names the bias `<weight>_bias`): s and the split of b' are lost.
  The bias is presumed to be all BN shift (torchvision's convs under a BN have no bias of their
  own) and s positive: exact for ResNets with positive γ; a conv bias of its own under a BN
  (VGG-BN) and negative γ cannot be recovered from such a file.
- Any other bias (parameter names as the framework wrote them, e.g. VGG-16's `features.0.bias`)
  is the conv's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from ..graph.constants import ConstantValues


@dataclass(frozen=True)
class ConvBias:
    """One conv as the authors' rule sees it: its own bias in the folded conv's units (None:
    no bias of its own) and, per output channel, whether a folded BN scale was negative."""
    own: np.ndarray | None
    flip: np.ndarray | None
    origin: str   # "batchnorm" (exact), "exporter-folded" (presumed BN shift) or "own"


def record_bn_folds(proto: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{BN output name: (scale s, shift t)} for every BatchNormalization that directly follows a
    Conv it alone consumes (the pairs onnxruntime fuses). Read before canonicalization."""
    values = ConstantValues(proto)
    producers = {o: n for n in proto.graph.node for o in n.output}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for i in node.input:
            uses[i] = uses.get(i, 0) + 1
    folds = {}
    for node in proto.graph.node:
        if node.op_type != "BatchNormalization" or len(node.input) < 5:
            continue
        conv = producers.get(node.input[0])
        params = [values.get(i) for i in node.input[1:5]]
        if conv is None or conv.op_type != "Conv" or uses.get(node.input[0], 0) != 1 or \
                any(p is None for p in params):
            continue
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        folds[node.output[0]] = (scale, beta - mean * scale)
    return folds


def conv_biases(proto: onnx.ModelProto, folds: dict) -> dict[str, ConvBias]:
    """{conv output name: ConvBias} for the canonical graph (see the module docstring)."""
    values = ConstantValues(proto)
    out = {}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        name = node.output[0]
        b_name = node.input[2] if len(node.input) > 2 else ""
        bias = values.get(b_name) if b_name else None
        bias = None if bias is None else bias.astype(np.float64)
        if name in folds:
            scale, shift = folds[name]
            own = (bias if bias is not None else 0.0) - shift
            out[name] = ConvBias(None if np.all(own == 0) else own, scale < 0, "batchnorm")
        elif bias is not None and _exporter_folded(b_name, node.input[1]):
            out[name] = ConvBias(None, None, "exporter-folded")
        elif bias is not None:
            out[name] = ConvBias(bias, None, "own")
    return out


def note(biases: dict[str, ConvBias]) -> str | None:
    """What intake tells the user when Relevance-CAM has to presume where biases came from."""
    presumed = sum(b.origin == "exporter-folded" for b in biases.values())
    if not presumed:
        return None
    return (f"{presumed} conv biases look folded from BatchNorm by the exporter: Relevance-CAM takes "
            "them as BN shift with positive scale (method relevancecam-bias takes them as the convs' own)")


def _exporter_folded(bias_name: str, weight_name: str) -> bool:
    """A bias the exporter created while folding BN: TorchScript's `onnx::Conv_N` constants, the
    dynamo optimizer's `<weight>_bias`."""
    return bias_name.startswith("onnx::") or bias_name == f"{weight_name}_bias"
