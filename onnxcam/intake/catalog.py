"""The layer catalog: which tensors of a canonical graph can be explained, and which one `auto` is.

A layer is any 4-D feature tensor with spatial extent that depends on the image. Layout is
propagated from the input (NCHW or NHWC) through Transposes, so tf2onnx graphs, which wrap convs
in Transposes, list their feature maps with the right channel axis. The input's own layout is read
the same way (input_layout): from the path between the input and its first convolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

NCHW, NHWC = "NCHW", "NHWC"
_TO_NCHW = {NCHW: (0, 1, 2, 3), NHWC: (0, 3, 1, 2)}
# Ops whose output keeps the layout of their first input (element-wise and same-shape ops).
_LAYOUT_KEEPING = {
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf",
    "Elu", "Selu", "Mul", "Add", "Sub", "Div", "Identity", "Dropout", "Cast", "Gelu", "Softplus",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Pad", "BatchNormalization", "Neg", "Abs", "Sqrt", "Pow",
}
_CHANNELS_FIRST_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization",
                       "InstanceNormalization", "LpPool", "Resize", "Upsample", "QLinearConv",
                       "ConvInteger", "DepthToSpace", "SpaceToDepth", "GlobalAveragePool",
                       "GlobalMaxPool"}
_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                "Elu", "Selu", "Gelu", "Softplus", "Identity", "Dropout"}
_GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool"}
_REDUCES = {"ReduceMean", "ReduceMax", "ReduceSum"}


@dataclass(frozen=True)
class LayerInfo:
    """One explainable tensor: name, producing op, (C, h, w), topological depth, layout; token_grid
    marks a transformer's token tensor (intake/tokens.py)."""
    name: str
    op: str
    channels: int
    height: int
    width: int
    depth: int
    layout: str
    preferred: bool
    token_grid: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Name -> shape tuple (ints, or strings for symbolic dims) from shape-inferred value infos."""
    shapes = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                for d in tt.shape.dim)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _perm(node: onnx.NodeProto) -> tuple[int, ...] | None:
    for a in node.attribute:
        if a.name == "perm":
            return tuple(a.ints)
    return None


def reshape_as_transpose(shape, target) -> tuple[int, ...] | None:
    """The perm p with out = in[p] when Reshape(shape -> target) only moves size-1 axes, so it is
    that Transpose (tf2onnx writes a 1-channel NHWC->NCHW Transpose so), else None. The batch
    axis may be symbolic (None or a name) and written 0 or -1 in target."""
    if target is None or np.ndim(target) != 1 or len(target) != 4 or len(shape) != 4:
        return None
    want = [shape[0] if i == 0 and (isinstance(v, str) or v in (0, -1)) else int(v)
            for i, v in enumerate(target)]
    if not all(isinstance(v, int) and v > 0 for v in list(shape[1:]) + want[1:]):
        return None
    free = [i for i, v in enumerate(shape) if v == 1]
    big = [i for i, v in enumerate(shape) if v != 1]
    if sorted(want[1:]) != sorted(shape[1:]) or len(free) != sum(v == 1 for v in want):
        return None
    perm = tuple(free.pop(0) if v == 1 else big.pop(0) for v in want)
    return perm if [shape[p] for p in perm] == want else None


def _spatial(shape, layout):
    return tuple(shape[i] for i in ((2, 3) if layout == NCHW else (1, 2)))


def propagate_layouts(model: onnx.ModelProto, input_name: str, input_layout: str) -> dict[str, str]:
    """Layout of every 4-D tensor reachable from the image input.

    Convolution-like ops produce NCHW; Transposes swap NCHW/NHWC; any other op whose 4-D output
    keeps the spatial size of a 4-D input of known layout keeps that layout. The last rule covers
    element-wise ops, LayerNormalization and channel MatMuls, which onnxruntime's transpose
    optimizer often leaves in NHWC inside otherwise NCHW graphs (ConvNeXt blocks).
    """
    shapes = tensor_shapes(model)
    layouts = {input_name: input_layout}
    folded = {}  # tensor of another rank -> (layout, shape) of the 4-D tensor it was reshaped from
    for node in model.graph.node:
        if not node.output:
            continue
        out = node.output[0]
        _carry_fold(node, out, shapes, layouts, folded)
        known = [(i, layouts[i]) for i in node.input if i in layouts]
        if not known:
            continue
        if node.op_type in _CHANNELS_FIRST_OPS:
            layouts[out] = NCHW
        elif node.op_type == "Transpose":
            perm, src = _perm(node), known[0][1]
            if perm == (0, 2, 3, 1) and src == NCHW:
                layouts[out] = NHWC
            elif perm == (0, 3, 1, 2) and src == NHWC:
                layouts[out] = NCHW
        elif node.op_type == "Reshape" and _moves_channels(shapes.get(known[0][0], ()), shapes.get(out, ()),
                                                           known[0][1]):
            layouts[out] = NHWC if known[0][1] == NCHW else NCHW
        elif node.op_type in _LAYOUT_KEEPING or node.op_type == "Concat":
            layouts[out] = known[0][1]
        else:
            out_shape = shapes.get(out, ())
            for name, layout in known:
                in_shape = shapes.get(name, ())
                if len(in_shape) == 4 and len(out_shape) == 4 and \
                        _spatial(in_shape, layout) == _spatial(out_shape, layout):
                    layouts[out] = layout
                    break
    return layouts


def _moves_channels(in_shape, out_shape, layout) -> bool:
    """A Reshape that is the NCHW<->NHWC Transpose (a 1-channel input, or 1x1 spatial)."""
    perm = reshape_as_transpose(in_shape, out_shape)
    return perm == ((0, 3, 1, 2) if layout == NHWC else (0, 2, 3, 1))


_ANY_LAYOUT = {"Resize", "Upsample"}   # scale whichever axes they are told: no channel axis of their own
_AXES = {(0, 1, 2, 3): NCHW, (0, 3, 1, 2): NHWC}   # which input axis reaches the conv's N, C, H, W


def input_layout(model: onnx.ModelProto, name: str, dims: list) -> tuple[str, int] | None:
    """(layout, C) of a 4-D input from the path to its first convolution, or None without one.

    Walking the graph in order, each tensor reached from the input remembers which input axis each
    of its axes is (`axes`); Transposes permute that, a Reshape that only moves size-1 axes (what
    tf2onnx's optimizer makes of a 1-channel NHWC->NCHW Transpose) is read as the transpose it is, and
    element-wise ops keep it. At the first channels-first op the input axis on its channel axis
    decides: 1 is NCHW, 3 NHWC. C comes from the conv weight ([M, C/group, kh, kw]) when it is a
    constant, else from the input's own dimension."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for i in dict.fromkeys(node.input):
            consumers.setdefault(i, []).append(node)
    reached = {name: (0, 1, 2, 3)}
    shapes = {name: tuple(dims)}
    queue = [name]   # breadth first, so node order does not matter (float16 converters append Casts)
    while queue:
        src = queue.pop(0)
        axes, shape = reached[src], shapes[src]
        for node in consumers.get(src, []):
            out = node.output[0] if node.output else None
            if node.op_type in _CHANNELS_FIRST_OPS - _ANY_LAYOUT and src == node.input[0]:
                layout = _AXES.get(axes)
                own = None if layout is None else dims[1] if layout == NCHW else dims[3]
                c = _conv_channels(node, inits, consts) or own
                return (layout, c) if layout and c and own in (None, c) else None
            perm = None
            if node.op_type == "Transpose":
                perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), (3, 2, 1, 0))
            elif node.op_type == "Reshape" and len(node.input) > 1 and src == node.input[0]:
                perm = reshape_as_transpose(shape, _small_constant(node.input[1], inits, consts))
            elif node.op_type in _LAYOUT_KEEPING | _ANY_LAYOUT:
                perm = (0, 1, 2, 3)
            if out and out not in reached and perm is not None and len(perm) == 4:
                reached[out] = tuple(axes[p] for p in perm)
                shapes[out] = tuple(shape[p] for p in perm)
                queue.append(out)
    return None


def _constant_tensor(name: str, inits: dict, consts: dict) -> onnx.TensorProto | None:
    if name in inits:
        return inits[name]
    node = consts.get(name)
    return next((a.t for a in node.attribute if a.name == "value"), None) if node is not None else None


def _small_constant(name: str, inits: dict, consts: dict) -> np.ndarray | None:
    """The values of a small constant (a Reshape's shape); None for a computed or external tensor."""
    t = _constant_tensor(name, inits, consts)
    if t is None or t.data_location == onnx.TensorProto.EXTERNAL or len(t.dims) != 1 or t.dims[0] > 8:
        return None
    return numpy_helper.to_array(t)


def _conv_channels(node, inits: dict, consts: dict) -> int | None:
    """Input channels of a convolution from its constant weight, None when the weight is computed."""
    index = 3 if node.op_type == "QLinearConv" else 1
    if len(node.input) <= index:
        return None
    w = _constant_tensor(node.input[index], inits, consts)   # its dims only: the data may be external
    if w is None or len(w.dims) != 4:
        return None
    group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
    return int(w.dims[0] if node.op_type == "ConvTranspose" else w.dims[1] * group)


def _carry_fold(node, out, shapes, layouts, folded) -> None:
    """GroupNorm as exported (Reshape to (N, G, -1) -> InstanceNormalization -> Reshape back): the
    3-D tensors in between remember the 4-D tensor they came from, and the Reshape back to that
    same shape gets its layout again."""
    out_shape = shapes.get(out, ())
    for i in node.input:
        in_shape = shapes.get(i, ())
        if len(in_shape) == 4 and i in layouts and len(out_shape) not in (0, 4):
            folded[out] = (layouts[i], in_shape)
        elif i in folded and len(out_shape) != 4:
            folded[out] = folded[i]
        elif i in folded and tuple(out_shape) == tuple(folded[i][1]):
            layouts[out] = folded[i][0]
        else:
            continue
        return


# Element types that carry gradients and can be explained (shared by the rewriter).
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
           onnx.TensorProto.BFLOAT16}


def build_catalog(model: onnx.ModelProto, input_name: str, input_layout: str) -> list[LayerInfo]:
    """Float 4-D tensors with spatial extent that depend on the image (integer tensors of
    quantized graphs are left out: their float twin after DequantizeLinear/Cast is listed)."""
    shapes = tensor_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(model.graph.value_info) + list(model.graph.output)}
    layouts = propagate_layouts(model, input_name, input_layout)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    layers = []
    for depth, node in enumerate(model.graph.node):
        if node.name.startswith("onnxcam/"):   # appended by onnxcam (a target's region, its masked sum):
            continue                           # not the model's layers
        for out in node.output[:1]:
            shape, layout = shapes.get(out), layouts.get(out)
            if layout is None or shape is None or len(shape) != 4 or types.get(out) not in FLOAT_TYPES:
                continue
            _, c, h, w = (shape[i] for i in _TO_NCHW[layout])
            if not all(isinstance(v, int) and v > 0 for v in (c, h, w)) or h * w <= 1:
                continue
            users = consumers.get(out, [])
            preferred = not users or not all(u.op_type in _ACTIVATIONS for u in users)
            layers.append(LayerInfo(out, node.op_type, c, h, w, depth, layout, preferred))
    return layers


def _reduces_space(node: onnx.NodeProto, layout: str, shapes: dict) -> bool:
    """True for ops that collapse the spatial axes: global pools, spatial reduces, flatten heads."""
    op = node.op_type
    if op in _GLOBAL_POOLS:
        return True
    spatial = {2, 3} if layout == NCHW else {1, 2}
    if op in _REDUCES:
        axes = None
        for a in node.attribute:
            if a.name == "axes":
                axes = list(a.ints)
        if axes is None and len(node.input) > 1:
            return True  # axes given as an input: spatial reduce in every CNN head we have seen
        return axes is not None and spatial <= {ax % 4 for ax in axes}
    if op in ("AveragePool", "MaxPool"):
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
        shape = shapes.get(node.input[0])
        return bool(kernel and shape and len(shape) == 4 and list(shape[2:]) == kernel)
    return op in ("Flatten", "Reshape")


def choose_auto(model: onnx.ModelProto, layers: list[LayerInfo]) -> LayerInfo | None:
    """`auto`: the last spatial tensor that feeds a global pooling or flatten (the classifier head).

    Squeeze-excite blocks also pool globally, so we take the pool nearest the output.
    """
    if not layers:
        return None
    by_name = {layer.name: layer for layer in layers}
    shapes = tensor_shapes(model)
    best = None
    for node in model.graph.node:
        if node.input and node.input[0] in by_name:
            layer = by_name[node.input[0]]
            if _reduces_space(node, layer.layout, shapes):
                best = layer if best is None or layer.depth > best.depth else best
    if best is not None:
        return best
    preferred = [layer for layer in layers if layer.preferred] or layers
    return preferred[-1]

