"""Match the layers of two builds of one network (FP32 vs FP16 / INT8 / another exporter).

Names do not survive deployment: FP16 conversion inserts Casts and renames tensors, static INT8 QDQ
removes the Clip/Relu after a Conv (the QuantizeLinear saturates instead) and renames the float
tensors `..._DequantizeLinear_Output`, dynamic INT8 turns a Conv into DynamicQuantizeLinear ->
ConvInteger -> Cast -> Mul(scale) -> Add(bias). So a layer is located by structure instead:

* its *anchor*: the nearest producing op that computes something new (Conv, Add of two feature
  maps, pooling, ...), looking back through ops that only change precision or apply a per-channel
  affine (Cast, Identity, DequantizeLinear, BatchNormalization, Mul/Add by a constant, or by an
  image-dependent scalar such as dynamic quantization's scale; a squeeze-excite gate is not one);
* the anchor's op family (ConvInteger and QLinearConv count as Conv; a Conv's weight shape is
  part of it, so a ResNet's 1x1 downsample and its 3x3 conv1 differ), how many Conv-family ops
  precede it (an order-free count: branches may be listed in another order by another exporter),
  and the layer's (C, h, w);
* its *role*: how many clamping activations (Relu, Clip, ..., and QuantizeLinear, which clamps to
  the integer range) lie between the anchor and the layer.

Layers with the same (family, convs, shape, role) are matched in topological order. When the
candidate lacks that role (a fused activation), the nearest role of the same anchor is taken and
the match says so. Users can override any pair.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from ..errors import OnnxCamError
from .catalog import LayerInfo, propagate_layouts, tensor_shapes

_PRECISION = {"Cast", "Identity", "Dropout", "DequantizeLinear", "DynamicQuantizeLinear",
              "BatchNormalization", "Pad"}
_CLAMPS = {"Relu", "Clip", "LeakyRelu", "PRelu", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
           "Gelu", "Softplus", "Sigmoid", "QuantizeLinear"}
_AFFINE = {"Mul", "Add", "Sub", "Div"}
_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "FusedConv": 1, "QLinearConv": 3}
_FAMILY = {"ConvInteger": "Conv", "QLinearConv": "Conv", "FusedConv": "Conv",
           "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul", "Gemm": "MatMul",
           "Sum": "Add", "QLinearAdd": "Add", "QLinearMul": "Mul",
           "QLinearGlobalAveragePool": "GlobalAveragePool"}


@dataclass(frozen=True)
class Place:
    """Where a tensor sits in the network, independent of names and precision."""
    family: str      # op family of the anchor, with the kernel shape for Conv-family anchors
    convs: int       # Conv-family ops among the anchor's ancestors, itself included
    shape: tuple     # (C, h, w)
    role: int        # clamping activations between the anchor and the tensor
    anchor: str      # the anchor node's first output (orders anchors with the same key)

    @property
    def key(self) -> tuple:
        return (self.family, self.convs, self.shape)


@dataclass(frozen=True)
class LayerMatch:
    reference: str
    candidate: str | None
    how: str         # "structural", "structural (nearest role)", "user", or "none"

    def as_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "how": self.how}


def _spatial(shape, layout) -> bool:
    if shape is None or len(shape) != 4:
        return False
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return not (isinstance(h, int) and isinstance(w, int) and h * w <= 1)


def _family(node: onnx.NodeProto, shapes: dict) -> str:
    family = _FAMILY.get(node.op_type, node.op_type)
    k = _WEIGHT_INPUT.get(node.op_type)
    if k is not None and len(node.input) > k:
        return f"{family}{list(shapes.get(node.input[k], ()))}"
    return family


def _size(shape) -> int | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    n = 1
    for d in shape:
        n *= d
    return n


def places(model) -> dict[str, Place]:
    """Place of every catalog layer of an intake.Model."""
    graph = model.proto.graph
    shapes = tensor_shapes(model.proto)
    layouts = propagate_layouts(model.proto, model.input_name, model.layout)
    feature = {t for t, lay in layouts.items() if _spatial(shapes.get(t), lay)}
    dependent = set(layouts)  # tensors that depend on the image (grown below)
    anchor: dict[str, tuple[str, str, int]] = {}   # tensor -> (anchor tensor, family, role)
    convs: dict[str, int] = {model.input_name: 0}  # tensor -> bitmask of Conv-family ancestors
    bits = 0
    for node in graph.node:
        mask = 0
        for i in node.input:
            mask |= convs.get(i, 0)
        if any(i in dependent for i in node.input):
            dependent.update(node.output)
        family = _family(node, shapes)
        if family.startswith("Conv"):
            mask |= 1 << bits
            bits += 1
        for out in node.output:
            if mask or any(i in convs for i in node.input):
                convs[out] = mask
        out = node.output[0] if node.output else None
        if out is None or out not in feature:
            continue
        fed = [i for i in node.input if i in feature and i in anchor]
        others = [i for i in node.input if i and i not in fed]
        affine = node.op_type in _AFFINE and len(fed) == 1 and all(
            i not in dependent or _size(shapes.get(i)) == 1 for i in others)
        through = node.op_type in _PRECISION or node.op_type in _CLAMPS or affine
        if through and fed:
            a, fam, role = anchor[fed[0]]
            anchor[out] = (a, fam, role + (node.op_type in _CLAMPS))
        else:
            anchor[out] = (out, family, 0)
    result = {}
    for layer in model.layers:
        if layer.name in anchor:
            a, fam, role = anchor[layer.name]
            result[layer.name] = Place(fam, bin(convs.get(a, 0)).count("1"), layer.shape, role, a)
    return result


def _chains(layers: list[LayerInfo], where: dict[str, Place]) -> dict[tuple, list[list[str]]]:
    """(key, role) -> one list of layers per anchor (anchors and layers in graph order)."""
    depth = {l.name: l.depth for l in layers}
    groups: dict[tuple, dict[str, list[str]]] = {}
    for name in sorted(where, key=depth.get):
        p = where[name]
        groups.setdefault((p.key, p.role), {}).setdefault(p.anchor, []).append(name)
    return {k: list(v.values()) for k, v in groups.items()}


def match_layers(ref, cand, overrides: dict[str, str] | None = None) -> dict[str, LayerMatch]:
    """For every layer of model `ref`, its counterpart in model `cand` (intake.Models).

    Within one anchor and role, layers pair up by position when both chains are equally long
    (the same ops, renamed); otherwise (Casts or a dequantizing Mul/Add added) a reference layer
    maps to the last layer of the candidate's chain, the one the next op reads.
    """
    overrides = dict(overrides or {})
    ref_names = {l.name for l in ref.layers}
    cand_names = {l.name for l in cand.layers}
    for r, c in overrides.items():
        if r not in ref_names:
            raise OnnxCamError(f"layer override {r}={c}: the reference has no layer {r!r}; "
                               "run `onnxcam layers REF.onnx`")
        if c not in cand_names:
            raise OnnxCamError(f"layer override {r}={c}: the candidate has no layer {c!r}; "
                               "run `onnxcam layers CANDIDATE.onnx`")
    ref_at, cand_at = places(ref), places(cand)
    ref_chains, cand_chains = _chains(ref.layers, ref_at), _chains(cand.layers, cand_at)
    position = {}  # ref layer -> (anchor rank, index in its chain)
    for chains in ref_chains.values():
        for rank, chain in enumerate(chains):
            for k, name in enumerate(chain):
                position[name] = (rank, k)
    roles_by_key: dict[tuple, list[int]] = {}
    for key, role in cand_chains:
        roles_by_key.setdefault(key, []).append(role)
    out = {}
    for layer in ref.layers:
        if layer.name in overrides:
            out[layer.name] = LayerMatch(layer.name, overrides[layer.name], "user")
            continue
        p = ref_at.get(layer.name)
        match = None
        if p is not None and p.key in roles_by_key:
            rank, k = position[layer.name]
            how, role = "structural", p.role
            if (p.key, role) not in cand_chains:
                below = [r for r in roles_by_key[p.key] if r <= role]
                role = max(below) if below else min(roles_by_key[p.key])
                how = "structural (nearest role)"
            chains = cand_chains[(p.key, role)]
            if rank < len(chains):
                ours, theirs = ref_chains[(p.key, p.role)][rank], chains[rank]
                pick = theirs[k] if len(ours) == len(theirs) else theirs[-1]
                match = LayerMatch(layer.name, pick, how)
        out[layer.name] = match or LayerMatch(layer.name, None, "none")
    return out


def counterpart(matches: dict[str, LayerMatch], name: str) -> str:
    """The candidate layer for reference layer `name`, or a one-line error saying how to fix it."""
    m = matches.get(name)
    if m is None or m.candidate is None:
        raise OnnxCamError(f"reference layer {name!r} has no structural counterpart in the candidate; "
                           f"name it with --match {name}=CANDIDATE_LAYER (see `onnxcam layers`)")
    return m.candidate
