"""Pooling and reductions: MaxPool through its Indices output (winner takes the gradient, scattered
with ScatterElements add), AveragePool as a ConvTranspose of ones over the exact per-window divisor,
GlobalAveragePool and ReduceMean/ReduceSum by broadcasting back."""
from __future__ import annotations

import numpy as np
from onnx import helper

from .linear import conv_geometry
from .registry import registry

RULES, rule = registry()


@rule("MaxPool")
def max_pool(ctx, node, g, wants):
    if ctx.attr(node, "storage_order", 0):
        ctx.fail(node, "column-major MaxPool indices")
    x = node.input[0]
    if len(node.output) < 2 or not node.output[1]:
        indices = ctx.b.fresh("maxpool_indices")
        del node.output[1:]
        node.output.append(indices)  # the forward node now also returns where each max came from
    indices = node.output[1]
    flat = ctx.ints([-1])
    zeros = ctx.op("Reshape", [ctx.zeros_like(x), flat])
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [indices, flat]),
                                           ctx.op("Reshape", [g[0], flat])],
                       hint="maxpool_grad", axis=0, reduction="add")
    return [ctx.reshape_like(scattered, x)]


def _window_counts(size, out, k, s, d, pb):
    """Number of real (non-pad) inputs in each pooling window along one axis."""
    counts = np.zeros(out)
    for o in range(out):
        start = o * s - pb
        idx = np.arange(start, start + d * (k - 1) + 1, d)
        counts[o] = np.count_nonzero((idx >= 0) & (idx < size))
    return counts


@rule("AveragePool")
def average_pool(ctx, node, g, wants):
    """dx = ConvTranspose(g / divisor, ones), in 1-D, 2-D or 3-D. The divisor per window is read off
    onnxruntime's own AveragePool of ones (it encodes count_include_pad and ceil_mode exactly as the
    forward ran). Channels may be dynamic (ResNeSt's split-attention pools behind a computed
    Reshape): every (image, channel) plane is pooled alike, so the planes are folded into the batch
    and one single-channel ConvTranspose serves them all."""
    x, y = node.input[0], node.output[0]
    xs, ys, kernel, strides, dil, pads = conv_geometry(ctx, node, x, x, y)
    spatial = len(kernel)
    if -1 in xs[2:] or -1 in ys[2:]:
        return [_average_pool_dynamic_size(ctx, node, g[0], kernel, strides, dil, pads)]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ones_avg = ctx.evaluate("AveragePool", [np.ones((1, 1) + tuple(xs[2:]), np.float32)], **attrs)[0, 0]
    counts = [_window_counts(xs[2 + i], ys[2 + i], kernel[i], strides[i], dil[i], pads[i])
              for i in range(spatial)]
    valid = counts[0]
    for c in counts[1:]:
        valid = np.multiply.outer(valid, c)
    inv_divisor = np.where(valid > 0, ones_avg / np.maximum(valid, 1), 0.0)
    scaled = ctx.op("Mul", [g[0], ctx.tensor(inv_divisor[None, None], y, "inv_divisor")])
    planes = ctx.op("Reshape", [scaled, ctx.ints([-1, 1] + list(ys[2:]))], hint="avgpool_planes")
    ones = ctx.tensor(np.ones((1, 1) + tuple(kernel)), x, "pool_ones")
    out_pad = [xs[2 + i] - ((ys[2 + i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1
                            - pads[i] - pads[i + spatial]) for i in range(spatial)]
    # ceil_mode windows may reach past the padded input: crop them with a larger end pad
    end_pads = [pads[spatial + i] + max(0, -out_pad[i]) for i in range(spatial)]
    out_pad = [max(0, p) for p in out_pad]
    gx = ctx.op("ConvTranspose", [planes, ones], hint="avgpool_grad", strides=strides,
                pads=list(pads[:spatial]) + end_pads, dilations=dil,
                kernel_shape=kernel, output_padding=out_pad)
    return [ctx.reshape_like(gx, x)]


def _average_pool_dynamic_size(ctx, node, g, kernel, strides, dil, pads):
    """AveragePool whose spatial size is only known at run time (floor mode). Every window lies in
    the padded input, so the divisor is the kernel size, or with count_include_pad=0 the count of
    real inputs per window: onnxruntime's AveragePool (count_include_pad=1) of a plane of ones
    times the kernel size. The ConvTranspose result is zero-padded at the end to the input size
    (the rows a floor-mode pool never read)."""
    auto = ctx.attr(node, "auto_pad", b"NOTSET")
    if ctx.attr(node, "ceil_mode", 0) or (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET":
        ctx.fail(node, "AveragePool with ceil_mode or auto_pad and a dynamic spatial size (fix the input size)")
    x, y = node.input[0], node.output[0]
    spatial = len(kernel)
    area = float(np.prod(kernel))
    plane = ctx.op("Slice", [x, ctx.ints([0]), ctx.ints([1]), ctx.ints([1])], hint="avgpool_plane")
    ones = ctx.op("Add", [ctx.zeros_like(plane), ctx.scalar(1, x)])
    scaled = ctx.op("Div", [g, ctx.scalar(area, x)])
    if not ctx.attr(node, "count_include_pad", 0) and any(pads):
        dilated = {"dilations": dil} if any(d != 1 for d in dil) else {}  # an opset-19 attribute
        inside = ctx.op("AveragePool", [ones], kernel_shape=kernel, strides=strides, pads=pads,
                        count_include_pad=1, **dilated)
        scaled = ctx.op("Div", [g, ctx.op("Mul", [inside, ctx.scalar(area, x)])])
    y_shape, x_shape = ctx.op("Shape", [y]), ctx.op("Shape", [x])
    planes = ctx.op("Reshape", [scaled, ctx.op("Concat", [ctx.ints([-1, 1]), ctx.op(
        "Slice", [y_shape, ctx.ints([2]), ctx.ints([2 + spatial])])], axis=0)], hint="avgpool_planes")
    gx = ctx.op("ConvTranspose", [planes, ctx.tensor(np.ones((1, 1) + tuple(kernel)), x, "pool_ones")],
                hint="avgpool_grad", strides=strides, pads=pads, dilations=dil, kernel_shape=kernel)
    missing = ctx.op("Sub", [ctx.op("Slice", [x_shape, ctx.ints([2]), ctx.ints([2 + spatial])]),
                             ctx.op("Slice", [ctx.op("Shape", [gx]), ctx.ints([2]), ctx.ints([2 + spatial])])])
    end_pads = ctx.op("Concat", [ctx.ints([0] * (2 + spatial) + [0, 0]), missing], axis=0)
    return ctx.reshape_like(ctx.op("Pad", [gx, end_pads], hint="avgpool_fill"), x)


@rule("GlobalAveragePool")
def global_average_pool(ctx, node, g, wants):
    x = node.input[0]
    area = int(np.prod(ctx.static_shape(x, node)[2:]))
    return [ctx.op("Expand", [ctx.op("Div", [g[0], ctx.scalar(area, x)]), ctx.shape_of(x)], hint="gap_grad")]


def _reduce_axes(ctx, node):
    axes = ctx.attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = ctx.const(node.input[1])
        if axes is None:
            ctx.fail(node, "reduction axes must be constant")
        axes = [int(a) for a in axes]
    rank = len(ctx.shape(node.input[0]))
    if not axes:
        if ctx.attr(node, "noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted(a % rank for a in axes)


@rule("ReduceMean", "ReduceSum")
def reduce_mean_sum(ctx, node, g, wants):
    x = node.input[0]
    axes = _reduce_axes(ctx, node)
    grad = g[0]
    if axes and not ctx.attr(node, "keepdims", 1):
        grad = ctx.op("Unsqueeze", [grad, ctx.ints(axes)])
    if node.op_type == "ReduceMean" and axes:
        dims = ctx.static_shape(x, node)
        count = int(np.prod([dims[a] for a in axes]))
        if count <= 0:
            ctx.fail(node, "mean over a dynamic axis")
        grad = ctx.op("Div", [grad, ctx.scalar(count, x)])
    return [ctx.op("Expand", [grad, ctx.shape_of(x)], hint="reduce_grad")] + [None] * (len(node.input) - 1)


@rule("GlobalMaxPool")
def global_max_pool(ctx, node, g, wants):
    """As ReduceMax over the spatial axes: ties share the cotangent evenly."""
    x, y = node.input[0], node.output[0]
    axes = list(range(2, len(ctx.shape(x))))
    hit = ctx.op("Cast", [ctx.op("Equal", [x, y])], hint="extreme", to=ctx.types.get(x, 1))
    share = ctx.op("Div", [g[0], ctx.b.reduce("ReduceSum", hit, axes, keepdims=1)])
    return [ctx.op("Mul", [hit, share], hint="gmp_grad")]


@rule("ReduceL2", "ReduceSumSquare")
def reduce_l2(ctx, node, g, wants):
    """ReduceSumSquare: dx = 2x g; ReduceL2 (ConvNeXt V2's GRN): dx = x g / y (0 where y = 0,
    PyTorch's norm subgradient)."""
    x, y = node.input[0], node.output[0]
    axes = _reduce_axes(ctx, node)
    grad, norm = g[0], y
    if axes and not ctx.attr(node, "keepdims", 1):
        grad = ctx.op("Unsqueeze", [grad, ctx.ints(axes)])
        norm = ctx.op("Unsqueeze", [y, ctx.ints(axes)])
    if node.op_type == "ReduceSumSquare":
        factor = ctx.op("Mul", [grad, ctx.scalar(2, x)])
    else:
        positive = ctx.op("Greater", [norm, ctx.scalar(0, x)])
        safe = ctx.op("Where", [positive, norm, ctx.scalar(1, x)])
        factor = ctx.op("Where", [positive, ctx.op("Div", [grad, safe]), ctx.scalar(0, x)])
    return [ctx.op("Mul", [x, factor], hint="reduce_l2_grad")] + [None] * (len(node.input) - 1)


@rule("ReduceMax", "ReduceMin")
def reduce_max_min(ctx, node, g, wants):
    """As PyTorch's amax/amin: the cotangent is shared evenly by the elements that attain the
    extreme (a decomposed Softmax starts with ReduceMax, as onnxruntime writes FP16 Softmax)."""
    x, y = node.input[0], node.output[0]
    axes = _reduce_axes(ctx, node)
    if not axes:
        return [g[0]] + [None] * (len(node.input) - 1)
    grad, extreme = g[0], y
    if not ctx.attr(node, "keepdims", 1):
        grad = ctx.op("Unsqueeze", [grad, ctx.ints(axes)])
        extreme = ctx.op("Unsqueeze", [y, ctx.ints(axes)])
    hit = ctx.op("Cast", [ctx.op("Equal", [x, extreme])], hint="extreme", to=ctx.types.get(x, 1))
    share = ctx.op("Div", [grad, ctx.b.reduce("ReduceSum", hit, axes, keepdims=1)])
    return [ctx.op("Mul", [hit, share], hint="reduce_extreme_grad")] + [None] * (len(node.input) - 1)
