"""Softmax, LogSoftmax (opset 13+ single-axis semantics), Layer-, Instance- and GroupNormalization."""
from __future__ import annotations

from .registry import registry

RULES, rule = registry()


def _axis(ctx, node, default=-1):
    return ctx.attr(node, "axis", default) % len(ctx.shape(node.input[0]))


@rule("Softmax")
def softmax(ctx, node, g, wants):
    y = node.output[0]
    dot = ctx.b.reduce("ReduceSum", ctx.op("Mul", [g[0], y]), [_axis(ctx, node)], keepdims=1)
    return [ctx.op("Mul", [y, ctx.op("Sub", [g[0], dot])], hint="softmax_grad")]


@rule("LogSoftmax")
def log_softmax(ctx, node, g, wants):
    y = node.output[0]
    total = ctx.b.reduce("ReduceSum", g[0], [_axis(ctx, node)], keepdims=1)
    return [ctx.op("Sub", [g[0], ctx.op("Mul", [ctx.op("Exp", [y]), total])], hint="logsoftmax_grad")]


def _normalized_grad(ctx, x, gs, axes, eps):
    """VJP of x̂ = (x - mean) / sqrt(var + ε) over `axes` for the cotangent gs of x̂:
    inv_std (gs - mean(gs) - x̂ mean(gs x̂)) (statistics recomputed from x)."""
    mean = ctx.b.reduce("ReduceMean", x, axes)
    centered = ctx.op("Sub", [x, mean])
    var = ctx.b.reduce("ReduceMean", ctx.op("Mul", [centered, centered]), axes)
    inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(eps, x)])])])
    xhat = ctx.op("Mul", [centered, inv])
    inner = ctx.op("Sub", [ctx.op("Sub", [gs, ctx.b.reduce("ReduceMean", gs, axes)]),
                           ctx.op("Mul", [xhat, ctx.b.reduce("ReduceMean", ctx.op("Mul", [gs, xhat]), axes)])])
    return ctx.op("Mul", [inv, inner], hint="norm_grad")


def _per_channel(ctx, node, v, rank):
    """A [C] parameter shaped to broadcast over (N, C, spatial...)."""
    return ctx.op("Reshape", [v, ctx.ints([-1] + [1] * (rank - 2))], hint="per_channel")


@rule("LayerNormalization")
def layer_norm(ctx, node, g, wants):
    """Normalized over the trailing axes from `axis`; scale broadcasts over the same axes."""
    x, scale = node.input[:2]
    rank = len(ctx.shape(x))
    axes = list(range(_axis(ctx, node), rank))
    gs = ctx.op("Mul", [g[0], scale])
    return [_normalized_grad(ctx, x, gs, axes, ctx.attr(node, "epsilon", 1e-5))] + [None] * (len(node.input) - 1)


@rule("InstanceNormalization")
def instance_norm(ctx, node, g, wants):
    """Per (image, channel) over the spatial axes; scale is per channel. The torchscript exporter
    writes GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul/Add."""
    x, scale = node.input[:2]
    rank = len(ctx.shape(x))
    gs = ctx.op("Mul", [g[0], _per_channel(ctx, node, scale, rank)])
    return [_normalized_grad(ctx, x, gs, list(range(2, rank)), ctx.attr(node, "epsilon", 1e-5)),
            None, None]


@rule("GroupNormalization")
def group_norm(ctx, node, g, wants):
    """Statistics per (image, group) over the group's channels and space. Opset 18 gives scale and
    bias per group, opset 21 per channel: the per-channel scale is built from whichever is given."""
    x, scale = node.input[:2]
    dims = ctx.static_shape(x, node)
    groups = ctx.attr(node, "num_groups")
    if dims[1] < 0 or not groups or dims[1] % groups:
        ctx.fail(node, "GroupNormalization needs a static channel count divisible by num_groups")
    values = ctx.const(scale)
    if values is None:
        ctx.fail(node, "GroupNormalization with a non-constant scale")
    if values.size == groups and groups != dims[1]:
        values = values.repeat(dims[1] // groups)
    rank = len(dims)
    gs = ctx.op("Mul", [g[0], ctx.tensor(values.reshape((-1,) + (1,) * (rank - 2)), x, "gn_scale")])
    grouped = ctx.ints([0, groups, -1])
    dx = _normalized_grad(ctx, ctx.op("Reshape", [x, grouped]), ctx.op("Reshape", [gs, grouped]), [2],
                          ctx.attr(node, "epsilon", 1e-5))
    return [ctx.reshape_like(dx, x), None, None]
