"""Token grids as layers: the token tensors of vision transformers, offered to every CAM method
as [N, C, h, w] feature maps.

A ViT/DeiT block passes [N, T, C] tokens: `extra` leading class, distillation or register tokens,
then the h x w patch grid row by row (T = extra + h*w, the grid read off T and the input size).
A Swin stage passes [N, H, W, C]. pytorch-grad-cam asks its users for a `reshape_transform` that
drops the extra tokens and reshapes the rest; here the graph does it once, at load time:

    tokens -> Slice(extra:) -> Reshape [N, h, w, C] -> Transpose -> GRID [N, C, h, w]
    GRID -> Transpose -> Reshape [N, h*w, C] -> Concat(extra tokens, .) -> every consumer of tokens

The rebuilt tokens equal the old ones, so the model computes what it did, but the grid now lies on
the path to the score: activations, gradients, ablations and masks at GRID are those of the patch
tokens, and no method needs to know about tokens. Swin's [N, H, W, C] tensors need no rewrite:
they are NHWC layers, which the catalog already handles.

Only the tensors one picks in practice are listed: LayerNormalization outputs and residual Adds
(block outputs), whose batch axis is the image batch (window-partitioned tensors are not).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import OnnxCamError
from .catalog import FLOAT_TYPES, NCHW, NHWC, LayerInfo, tensor_shapes

GRID_SUFFIX = "/grid"
MAX_EXTRA = 16            # class + distillation + register tokens we look for in front of the grid
_KINDS = {"LayerNormalization", "Add"}


def grid_of(tokens: int, image_hw) -> tuple[int, int, int] | None:
    """(extra, h, w): the fewest leading tokens that leave an h x w grid tiling the image with
    square patches (H = p h, W = p w), or None."""
    big_h, big_w = image_hw
    for extra in range(0, min(MAX_EXTRA, tokens - 1) + 1):
        n = tokens - extra
        h = round(math.sqrt(n * big_h / big_w))
        if h < 1 or n % h:
            continue
        w = n // h
        if big_h % h == 0 and big_w % w == 0 and big_h // h == big_w // w:
            return extra, h, w
    return None


def _is_grid(h, w, image_hw) -> bool:
    big_h, big_w = image_hw
    return (isinstance(h, int) and isinstance(w, int) and h > 1 and w > 1 and big_h % h == 0
            and big_w % w == 0 and big_h // h == big_w // w)


# An odd prime batch for _with_static_batch: a window-partitioned axis holds batch x windows, never it
_PROBE_BATCH = 7


def _with_static_batch(model: onnx.ModelProto, input_name: str) -> dict[str, tuple]:
    """Shapes inferred with the image batch fixed to _PROBE_BATCH, on a copy without the weights.

    With a symbolic batch, shape inference loses it at the class token's Expand (its shape is
    computed from Shape(x)) and at Swin's window reshapes: every later tensor gets a new symbol,
    so [N, T, C] tokens and [N * windows, 49, C] windows look alike. With a number it flows."""
    from .canonical import infer_shapes

    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.graph.node.extend(model.graph.node)
    light.graph.output.extend(model.graph.output)
    for vi in model.graph.input:
        light.graph.input.append(vi)
        if vi.name == input_name:
            dim = light.graph.input[-1].type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_value = _PROBE_BATCH
    for t in model.graph.initializer:
        if t.ByteSize() <= 4096:
            light.graph.initializer.append(t)
        else:
            light.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        return tensor_shapes(infer_shapes(light))
    except OnnxCamError:   # shape inference refused the copy: no token layers rather than no model
        return {}


def _candidates(model: onnx.ModelProto, input_name: str, image_hw, known: set[str]):
    """(depth, node, kind, extra, h, w, c) of the listable token tensors, kind "tokens" or "nhwc"."""
    plain = tensor_shapes(model)
    if not any(n.op_type in _KINDS and n.output[0] not in known and len(plain.get(n.output[0], ())) in (3, 4)
               for n in model.graph.node):
        return []   # a CNN: its Adds are listed feature maps already; no shape inference needed
    shapes = _with_static_batch(model, input_name)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    batch = _PROBE_BATCH
    live = {input_name}
    found = []
    for depth, node in enumerate(model.graph.node):
        if not any(i in live for i in node.input):
            continue
        live.update(node.output)
        out = node.output[0]
        if node.op_type not in _KINDS or out in known or types.get(out) not in FLOAT_TYPES:
            continue
        if node.op_type == "Add" and not all(i in live for i in node.input):
            continue   # a bias or a positional embedding, not a residual sum
        shape = shapes.get(out, ())
        if not shape or shape[0] != batch:
            continue
        if len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
            grid = grid_of(shape[1], image_hw)
            if grid is not None:
                found.append((depth, node, "tokens", *grid, shape[2]))
        elif len(shape) == 4 and isinstance(shape[3], int) and _is_grid(shape[1], shape[2], image_hw) \
                and not _is_grid(shape[2], shape[3], image_hw):
            found.append((depth, node, "nhwc", 0, shape[1], shape[2], shape[3]))
    return found


def add_token_layers(model: onnx.ModelProto, input_name: str, image_hw, layers: list[LayerInfo]
                     ) -> list[LayerInfo]:
    """The catalog with the token layers added (model edited in place: each [N, T, C] tensor gets
    its grid view, see the module docstring), in depth order. Depths count the nodes of the graph
    as it was, so the other layers keep theirs."""
    found = _candidates(model, input_name, image_hw, {layer.name for layer in layers})
    if not found:
        return layers
    added, views = [], {}
    for depth, node, kind, extra, h, w, c in found:
        out = node.output[0]
        if kind == "nhwc":
            added.append(LayerInfo(out, node.op_type, c, h, w, depth, NHWC, True, token_grid=True))
            continue
        views[out] = (extra, h, w, c)   # value_info carries the input's batch symbol from here on
        added.append(LayerInfo(out + GRID_SUFFIX, node.op_type, c, h, w, depth, NCHW, True, token_grid=True))
    _insert_views(model, views, tensor_shapes(model)[input_name][0])
    return sorted(layers + added, key=lambda layer: layer.depth)


def _insert_views(model: onnx.ModelProto, views: dict, batch) -> None:
    """Put each token tensor's grid on its path (module docstring), right behind its producer."""
    graph = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    rebuilt = {}
    new_nodes, inits, infos = [], [], []
    for tokens, (extra, h, w, c) in views.items():
        elem = types.get(tokens, onnx.TensorProto.FLOAT)
        t = extra + h * w

        def const(name, values):
            inits.append(numpy_helper.from_array(np.asarray(values, np.int64), f"{tokens}/onnxcam_{name}"))
            return inits[-1].name

        def node(op, inputs, name, dims, **attrs):
            out = f"{tokens}{GRID_SUFFIX}" if name == "grid" else f"{tokens}/onnxcam_{name}"
            new_nodes.append((tokens, helper.make_node(op, inputs, [out], name=f"onnxcam_tokens/{out}", **attrs)))
            infos.append(helper.make_tensor_value_info(out, elem, [batch] + dims))
            return out

        patches = node("Slice", [tokens, const("first", [extra]), const("end", [t]), const("axis", [1])],
                       "patches", [h * w, c])
        rows = node("Reshape", [patches, const("grid_shape", [0, h, w, c])], "rows", [h, w, c])
        grid = node("Transpose", [rows], "grid", [c, h, w], perm=[0, 3, 1, 2])
        back = node("Transpose", [grid], "back_rows", [h, w, c], perm=[0, 2, 3, 1])
        seq = node("Reshape", [back, const("seq_shape", [0, h * w, c])], "back_patches", [h * w, c])
        if extra:
            head = node("Slice", [tokens, const("zero", [0]), const("extra", [extra]), const("axis0", [1])],
                        "extra_tokens", [extra, c])
            seq = node("Concat", [head, seq], "back_tokens", [t, c], axis=1)
        rebuilt[tokens] = seq
    ours = {n.name for _, n in new_nodes}
    for n in graph.node:   # every consumer reads the tokens rebuilt from the grid
        if n.name not in ours:
            for k, i in enumerate(n.input):
                if i in rebuilt:
                    n.input[k] = rebuilt[i]
    behind: dict[str, list] = {}
    for tokens, n in new_nodes:
        behind.setdefault(tokens, []).append(n)
    order = []
    for n in graph.node:
        order.append(n)
        for out in n.output[:1]:
            order.extend(behind.get(out, []))
    del graph.node[:]
    graph.node.extend(order)
    graph.initializer.extend(inits)
    graph.value_info.extend(infos)


def choose_token_auto(model: onnx.ModelProto, layers: list[LayerInfo], fallback: LayerInfo | None
                      ) -> LayerInfo | None:
    """`auto` for transformers, when token layers reach deeper than the CNN rule's choice.

    A head that reads the class (or distillation) token makes the patch tokens of the last block's
    output irrelevant to the score (LayerNorm and the head act per token): their gradient is 0. There
    the auto layer is the deepest token layer that feeds the last attention softmax, the input of
    the last block's attention as LayerNorm left it (pytorch-grad-cam's ViT example,
    `model.blocks[-1].norm1`). A head that pools all tokens (Swin, mean-pooled ViTs) takes the
    input of the final norm: the last block's output."""
    tokens = [layer for layer in layers if layer.token_grid]
    if not tokens:
        return fallback
    if _reads_extra_tokens(model, layers):
        feeding = _ancestors_of_last_softmax(model)
        chosen = [layer for layer in tokens if layer.name in feeding]
        if chosen:
            return max(chosen, key=lambda layer: layer.depth)
    deepest = max(tokens, key=lambda layer: layer.depth)
    if fallback is not None and fallback.depth >= deepest.depth:
        deepest = fallback
    return _input_of_norm(model, layers, deepest) or deepest


_VIEWS = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Concat"}


def _input_of_norm(model: onnx.ModelProto, layers: list[LayerInfo], layer: LayerInfo) -> LayerInfo | None:
    """The listed layer a LayerNormalization output is the normalized view of (through reshapes,
    transposes and the grid views), None when `layer` is no LayerNormalization output."""
    by_name = {item.name: item for item in layers}
    by_name.update({item.name[:-len(GRID_SUFFIX)]: item for item in layers if item.name.endswith(GRID_SUFFIX)})
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(layer.name[:-len(GRID_SUFFIX)] if layer.name.endswith(GRID_SUFFIX) else layer.name)
    if node is None or node.op_type != "LayerNormalization":
        return None
    name = node.input[0]
    for _ in range(16):
        if name in by_name and by_name[name] is not layer:
            return by_name[name]
        node = producers.get(name)
        if node is None or node.op_type not in _VIEWS:
            return None
        name = node.input[-1] if node.op_type == "Concat" else node.input[0]   # the grid's own part
    return None


def _reads_extra_tokens(model: onnx.ModelProto, layers: list[LayerInfo]) -> bool:
    """A Gather or Slice on the token axis of a token tensor that picks only leading (extra)
    tokens: the class-token head."""
    shapes = tensor_shapes(model)
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    extras = {}
    for n in model.graph.node:   # the extra count of each grid view's token tensor, by token count
        if n.name.startswith("onnxcam_tokens/") and n.op_type == "Slice" and n.output[0].endswith("/onnxcam_patches"):
            t = shapes.get(n.input[0], (None, None))[1]
            first = consts.get(n.input[1])
            if isinstance(t, int) and first is not None and int(first[0]) > 0:
                extras[t] = int(first[0])
    for n in model.graph.node:
        if n.name.startswith("onnxcam_tokens/") or not n.input:
            continue
        shape = shapes.get(n.input[0], ())
        if len(shape) != 3 or shape[1] not in extras:
            continue
        extra = extras[shape[1]]
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        if n.op_type == "Gather" and axis % 3 == 1 and n.input[1] in consts:
            idx = consts[n.input[1]]
            if idx.size and np.all((idx >= 0) & (idx < extra)):
                return True
        if n.op_type == "Slice" and len(n.input) > 3 and all(i in consts for i in n.input[1:4]):
            starts, ends, axes = (consts[i] for i in n.input[1:4])
            if list(axes % 3) == [1] and 0 <= starts[0] and 0 < ends[0] <= extra:
                return True
    return False


def _ancestors_of_last_softmax(model: onnx.ModelProto) -> set[str]:
    """Tensors the last attention reads (its softmax over [.., T, T], not the classifier's [N, K],
    or opset 23's fused Attention), gathered in one pass back over the sorted nodes before it."""
    shapes = tensor_shapes(model)
    nodes = list(model.graph.node)
    at = next((k for k in range(len(nodes) - 1, -1, -1) if nodes[k].op_type == "Attention" or
               nodes[k].op_type == "Softmax" and len(shapes.get(nodes[k].input[0], ())) >= 3), None)
    if at is None:
        return set()
    needed = set(nodes[at].input)
    for node in reversed(nodes[:at]):
        if any(o in needed for o in node.output):
            needed.update(i for i in node.input if i)
    return needed
