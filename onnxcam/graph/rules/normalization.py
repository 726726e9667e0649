"""Softmax, LogSoftmax (opset 13+ single-axis semantics) and LayerNormalization."""
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


@rule("LayerNormalization")
def layer_norm(ctx, node, g, wants):
    """dx = inv_std (gγ - mean(gγ) - x̂ mean(gγ x̂)) over the normalized axes (statistics recomputed)."""
    x, scale = node.input[:2]
    rank = len(ctx.shape(x))
    axes = list(range(_axis(ctx, node), rank))
    eps = ctx.attr(node, "epsilon", 1e-5)
    mean = ctx.b.reduce("ReduceMean", x, axes)
    centered = ctx.op("Sub", [x, mean])
    var = ctx.b.reduce("ReduceMean", ctx.op("Mul", [centered, centered]), axes)
    inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(eps, x)])])])
    xhat = ctx.op("Mul", [centered, inv])
    gs = ctx.op("Mul", [g[0], scale])
    inner = ctx.op("Sub", [ctx.op("Sub", [gs, ctx.b.reduce("ReduceMean", gs, axes)]),
                           ctx.op("Mul", [xhat, ctx.b.reduce("ReduceMean", ctx.op("Mul", [gs, xhat]), axes)])])
    return [ctx.op("Mul", [inv, inner], hint="layernorm_grad")] + [None] * (len(node.input) - 1)
