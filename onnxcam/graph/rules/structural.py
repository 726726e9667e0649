"""Ops that move values without changing them: Reshape family, Transpose, Concat, Split, Slice,
Pad, Expand, and Resize (linear in its input: its exact Jacobian per axis is read off onnxruntime
on a basis, so every mode and coordinate transform is handled in the runtime's own semantics)."""
from __future__ import annotations

import numpy as np
from onnx import helper

from .registry import registry

RULES, rule = registry()


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx, node, g, wants):
    return [ctx.reshape_like(g[0], node.input[0])] + [None] * (len(node.input) - 1)


@rule("Transpose")
def transpose(ctx, node, g, wants):
    perm = ctx.attr(node, "perm") or list(reversed(range(len(ctx.shape(node.input[0])))))
    inverse = list(np.argsort(perm))
    return [ctx.op("Transpose", [g[0]], perm=[int(p) for p in inverse])]


@rule("Concat")
def concat(ctx, node, g, wants):
    rank = len(ctx.shape(node.output[0]))
    axis = ctx.attr(node, "axis") % rank
    sizes = [ctx.static_shape(i, node)[axis] for i in node.input]
    if min(sizes) < 0:   # a size only known at run time (after a Reshape to -1): read it off the inputs
        split = ctx.op("Concat", [ctx.op("Slice", [ctx.shape_of(i), ctx.ints([axis]), ctx.ints([axis + 1])],
                                         hint="concat_size") for i in node.input], hint="concat_sizes", axis=0)
    else:
        split = ctx.ints(sizes)
    parts = ctx.b.op("Split", [g[0], split], hint="concat_grad", outputs=len(sizes), axis=axis)
    parts = parts if isinstance(parts, list) else [parts]
    return [p if w else None for p, w in zip(parts, wants)]


@rule("Split")
def split(ctx, node, g, wants):
    axis = ctx.attr(node, "axis", 0)
    parts = [gi if gi is not None else ctx.zeros_like(o) for gi, o in zip(g, node.output)]
    return [ctx.op("Concat", parts, hint="split_grad", axis=axis)] + [None] * (len(node.input) - 1)


@rule("Slice")
def slice_(ctx, node, g, wants):
    """Constant step-1 slices: the cotangent zero-padded back to the input's shape. Any other
    (steps, negative steps, bounds computed at run time: Swin's patch merging x[:, 0::2, 1::2]):
    scattered back through the positions the same Slice picks out of an index tensor."""
    x = node.input[0]
    dims = ctx.static_shape(x, node)
    vals = [ctx.folded(n) if n else None for n in node.input[1:]] + [None] * (5 - len(node.input))
    starts, ends, axes, steps = vals[:4]
    given = [bool(n) for n in node.input[1:]] + [False] * (5 - len(node.input))
    rank = len(dims)
    plain = starts is not None and ends is not None and (axes is not None or not given[2]) and \
        (steps is None and not given[3] or steps is not None and all(int(s) == 1 for s in steps))
    if plain:
        axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
        plain = all(dims[a] >= 0 for a in axes)
    if not plain:
        return [_scatter_back(ctx, node, g[0])] + [None] * (len(node.input) - 1)
    pads = [0] * (2 * rank)
    for a, st, en in zip(axes, starts, ends):
        size = dims[a]
        st = int(np.clip(st + size if st < 0 else st, 0, size))
        en = int(np.clip(en + size if en < 0 else en, 0, size))
        pads[a], pads[a + rank] = st, size - max(en, st)
    return [ctx.op("Pad", [g[0], ctx.ints(pads)], hint="slice_grad")] + [None] * (len(node.input) - 1)


def _scatter_back(ctx, node, g):
    """dx of y = Slice(x, ...): run the node's own Slice (same bound tensors, so the same clamping
    and step semantics) on the flat positions 0..numel-1 shaped like x, then scatter g to them."""
    x = node.input[0]
    shape = ctx.shape_of(x)
    count = ctx.b.reduce("ReduceProd", shape, [0], keepdims=0, hint="numel")
    positions = ctx.op("Reshape", [ctx.op("Range", [ctx.ints(0), count, ctx.ints(1)], hint="positions"), shape])
    picked = ctx.op("Slice", [positions] + list(node.input[1:]), hint="slice_positions")
    flat = ctx.ints([-1])
    zeros = ctx.op("Reshape", [ctx.zeros_like(x), flat])
    gx = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [picked, flat]), ctx.op("Reshape", [g, flat])],
                hint="slice_scatter", axis=0)
    return ctx.op("Reshape", [gx, shape], hint="slice_grad")


@rule("Pad")
def pad(ctx, node, g, wants):
    mode = ctx.attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        ctx.fail(node, f"Pad mode {mode!r} (only constant)")
    pads = ctx.const(node.input[1]) if len(node.input) > 1 else np.asarray(ctx.attr(node, "pads"))
    if pads is None or (len(node.input) > 3 and node.input[3]):
        ctx.fail(node, "Pad with non-constant pads or axes")
    x = node.input[0]
    dims = ctx.static_shape(x, node)
    rank = len(dims)
    if any(int(p) < 0 for p in pads):
        ctx.fail(node, "negative pads")
    starts = [int(p) for p in pads[:rank]]
    ends = [int(pads[i]) + dims[i] if dims[i] >= 0 else np.iinfo(np.int64).max for i in range(rank)]
    gx = ctx.op("Slice", [g[0], ctx.ints(starts), ctx.ints(ends)], hint="pad_grad")
    return [gx] + [None] * (len(node.input) - 1)


@rule("Expand")
def expand(ctx, node, g, wants):
    return [ctx.unbroadcast(g[0], node.output[0], node.input[0], node), None]


def _resize_matrix(ctx, node, axis: int, size_in: int, size_out: int) -> np.ndarray:
    """R [out, in] of this Resize along one spatial axis, computed by onnxruntime on a basis."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs.pop("axes", None)
    basis = np.eye(size_in, dtype=np.float32).reshape(1, size_in, size_in, 1)
    sizes = np.array([1, size_in, size_out, 1], np.int64)
    if attrs.get("coordinate_transformation_mode", b"") in (b"tf_crop_and_resize", "tf_crop_and_resize"):
        ctx.fail(node, "tf_crop_and_resize")
    scales = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scales is not None and scales.size:
        probe_scales = np.array([1, 1, scales[axis], 1], np.float32)
        out = ctx.evaluate("Resize", [basis, None, probe_scales], **attrs)
    else:
        out = ctx.evaluate("Resize", [basis, None, None, sizes], **attrs)
    return out[0, :, :, 0].T  # [out, in]


@rule("Resize")
def resize(ctx, node, g, wants):
    """Resize acts per axis: Y = R_h X R_w^T, so dX = R_h^T G R_w (two MatMuls with constants)."""
    x, y = node.input[0], node.output[0]
    xs, ys = ctx.static_shape(x, node), ctx.static_shape(y, node)
    if len(xs) != 4 or xs[1] != ys[1] or (xs[0] != ys[0] and -1 not in (xs[0], ys[0])):
        ctx.fail(node, "only spatial (last two axes) Resize of 4-D tensors is supported")
    rh = _resize_matrix(ctx, node, 2, xs[2], ys[2])
    rw = _resize_matrix(ctx, node, 3, xs[3], ys[3])
    t = ctx.op("MatMul", [g[0], ctx.tensor(rw, x, "resize_w")])
    gx = ctx.op("MatMul", [ctx.tensor(rh.T, x, "resize_hT"), t], hint="resize_grad")
    return [gx] + [None] * (len(node.input) - 1)


@rule("Gather")
def gather(ctx, node, g, wants):
    """Gather (e.g. the dynamo exporter's as_strided): the cotangent is scatter-added back to the
    gathered positions. Indices may be computed in the graph; negative ones are wrapped."""
    data, idx = node.input
    rank = len(ctx.shape(data))
    if not rank:
        ctx.fail(node, "unknown data rank")
    axis = ctx.attr(node, "axis", 0) % rank
    data_shape = ctx.shape_of(data)
    size = ctx.op("Slice", [data_shape, ctx.ints([axis]), ctx.ints([axis + 1])])
    idx = ctx.op("Cast", [idx], to=7)
    idx = ctx.op("Where", [ctx.op("Less", [idx, ctx.ints(0)]), ctx.op("Add", [idx, size]), idx])
    # g has shape data[:axis] + indices.shape + data[axis+1:]: fold the index dims into one axis
    fold = ctx.op("Concat", [ctx.op("Slice", [data_shape, ctx.ints([0]), ctx.ints([axis])]), ctx.ints([-1]),
                             ctx.op("Slice", [data_shape, ctx.ints([axis + 1]), ctx.ints([rank])])], axis=0)
    g_folded = ctx.op("Reshape", [g[0], fold])
    column = [1] * rank
    column[axis] = -1
    positions = ctx.op("Expand", [ctx.op("Reshape", [idx, ctx.ints(column)]), ctx.shape_of(g_folded)])
    gx = ctx.op("ScatterElements", [ctx.zeros_like(data), positions, g_folded], hint="gather_grad",
                axis=axis, reduction="add")
    return [gx, None]


@rule("Tile")
def tile(ctx, node, g, wants):
    """Each input element appears once per tile: the cotangent, viewed as (r0, d0, r1, d1, ...),
    is summed over the repeat axes."""
    x = node.input[0]
    dims = ctx.static_shape(x, node)
    repeats = ctx.const(node.input[1])
    if repeats is None or -1 in dims[1:]:
        ctx.fail(node, "Tile with non-constant repeats or a dynamic input shape")
    view = []
    for r, d in zip(repeats, dims):
        view += [int(r), d if d > 0 else 0]
    if dims[0] < 0:
        if int(repeats[0]) != 1:
            ctx.fail(node, "Tile that repeats a dynamic batch")
        view[1] = -1
    folded = ctx.op("Reshape", [g[0], ctx.ints(view)], hint="tile_view")
    summed = ctx.b.reduce("ReduceSum", folded, list(range(0, 2 * len(dims), 2)), keepdims=0)
    return [summed, None]


def _rearrangement(ctx, node):
    """(view, perm) such that the op's output = Reshape(Transpose(Reshape(x, view), perm), out shape)."""
    n, c, h, w = ctx.static_shape(node.input[0], node)
    b = ctx.attr(node, "blocksize")
    if -1 in (c, h, w):
        ctx.fail(node, f"{node.op_type} with a dynamic channel count or size")
    if node.op_type == "SpaceToDepth":
        return [-1, c, h // b, b, w // b, b], [0, 3, 5, 1, 2, 4]
    mode = ctx.attr(node, "mode", b"DCR")
    if (mode.decode() if isinstance(mode, bytes) else mode) == "CRD":
        return [-1, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
    return [-1, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]


@rule("DepthToSpace", "SpaceToDepth")
def depth_space(ctx, node, g, wants):
    """Both are a Reshape, a 6-D Transpose and a Reshape (ONNX's definition): the cotangent goes
    back through the inverse Transpose."""
    view, perm = _rearrangement(ctx, node)
    moved = [view[p] for p in perm]
    inner = ctx.op("Reshape", [g[0], ctx.ints(moved)], hint="d2s_view")
    back = ctx.op("Transpose", [inner], perm=[int(p) for p in np.argsort(perm)])
    return [ctx.reshape_like(back, node.input[0])]


@rule("Einsum")
def einsum(ctx, node, g, wants):
    """d operand_i = einsum(g, other operands -> operand_i's indices), expanded over indices that
    only operand i has and that were summed away. Repeated indices (diagonals) and ellipses are refused."""
    eq = (ctx.attr(node, "equation") or b"")
    eq = (eq.decode() if isinstance(eq, bytes) else eq).replace(" ", "")
    lhs, _, out = eq.partition("->")
    terms = lhs.split(",")
    if "." in eq or not _ or any(len(set(t)) != len(t) for t in terms + [out]):
        ctx.fail(node, f"Einsum {eq!r} (ellipsis, implicit output or repeated index)")
    grads = []
    for i, (term, w) in enumerate(zip(terms, wants)):
        if not w:
            grads.append(None)
            continue
        others = [t for k, t in enumerate(terms) if k != i]
        seen = set(out).union(*others) if others else set(out)
        kept = "".join(c for c in term if c in seen)
        inputs = [g[0]] + [n for k, n in enumerate(node.input) if k != i]
        gi = ctx.op("Einsum", inputs, hint="einsum_grad", equation=",".join([out] + others) + "->" + kept)
        if kept != term:  # indices summed by this operand alone: broadcast back over them
            gi = ctx.op("Unsqueeze", [gi, ctx.ints([k for k, c in enumerate(term) if c not in seen])])
            gi = ctx.op("Expand", [gi, ctx.shape_of(node.input[i])])
        grads.append(gi)
    return grads
