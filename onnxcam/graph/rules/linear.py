"""Linear ops: Conv (backward = ConvTranspose), ConvTranspose (backward = Conv), Gemm, MatMul,
inference BatchNormalization. Only input gradients are built; weights never get one."""
from __future__ import annotations

import numpy as np

from .registry import registry


RULES, rule = registry()


def conv_geometry(ctx, node, x, w, y):
    """Spatial kernel, strides, dilations and explicit pads of a Conv (auto_pad resolved)."""
    xs, ys = ctx.static_shape(x, node), ctx.static_shape(y, node)
    spatial = len(xs) - 2
    kernel = ctx.attr(node, "kernel_shape") or list(ctx.static_shape(w, node)[2:])
    strides = ctx.attr(node, "strides") or [1] * spatial
    dil = ctx.attr(node, "dilations") or [1] * spatial
    pads = ctx.attr(node, "pads") or [0] * (2 * spatial)
    auto = ctx.attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * spatial)
        for i in range(spatial):
            total = max(0, (ys[2 + i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - xs[2 + i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + spatial] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * spatial)
    return xs, ys, list(kernel), list(strides), list(dil), list(pads)


@rule("Conv")
def conv(ctx, node, g, wants, weight: str | None = None):
    """dx = ConvTranspose(g, W). `weight` replaces W (LRP rules reuse this with modified weights)."""
    x, w = node.input[:2]
    xs, ys, kernel, strides, dil, pads = conv_geometry(ctx, node, x, w, node.output[0])
    spatial = len(kernel)
    out_pad = []
    for i in range(spatial):
        natural = (ys[2 + i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - pads[i] - pads[i + spatial]
        out_pad.append(xs[2 + i] - natural)
    if any(p < 0 for p in out_pad):
        ctx.fail(node, "unexpected output geometry")
    gx = ctx.op("ConvTranspose", [g[0], weight or w], hint="conv_grad", strides=strides, pads=pads,
                dilations=dil, group=ctx.attr(node, "group", 1), kernel_shape=kernel,
                output_padding=out_pad)
    return [gx] + [None] * (len(node.input) - 1)


@rule("ConvTranspose")
def conv_transpose(ctx, node, g, wants, weight: str | None = None):
    x, w = node.input[:2]
    if ctx.attr(node, "output_shape") or ctx.attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        ctx.fail(node, "ConvTranspose with output_shape/auto_pad is not supported; export with explicit pads")
    spatial = len(ctx.static_shape(x, node)) - 2
    kernel = ctx.attr(node, "kernel_shape") or list(ctx.static_shape(w, node)[2:])
    gx = ctx.op("Conv", [g[0], weight or w], hint="convT_grad", strides=ctx.attr(node, "strides") or [1] * spatial,
                pads=ctx.attr(node, "pads") or [0] * (2 * spatial),
                dilations=ctx.attr(node, "dilations") or [1] * spatial,
                group=ctx.attr(node, "group", 1), kernel_shape=list(kernel))
    return [gx] + [None] * (len(node.input) - 1)


def _transposed(ctx, name):
    """B^T for the last two axes; a constant is transposed once, at build time."""
    value = ctx.const(name)
    if value is not None:
        return ctx.tensor(np.swapaxes(value, -1, -2), name, "transposed")
    rank = len(ctx.shape(name))
    if rank < 2:
        return None
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return ctx.op("Transpose", [name], perm=perm)


@rule("Gemm")
def gemm(ctx, node, g, wants, weight: str | None = None):
    a, b = node.input[:2]
    b = weight or b
    alpha, beta = ctx.attr(node, "alpha", 1.0), ctx.attr(node, "beta", 1.0)
    ta, tb = ctx.attr(node, "transA", 0), ctx.attr(node, "transB", 0)
    grads = [None] * len(node.input)
    if wants[0]:  # dA' = alpha g B'^T; A = A'^T when transA
        ga = ctx.op("Gemm", [g[0], b], hint="gemm_grad", alpha=alpha, transB=1 - tb)
        grads[0] = ctx.op("Transpose", [ga], perm=[1, 0]) if ta else ga
    if wants[1]:  # dB' = alpha A'^T g
        gb = ctx.op("Gemm", [a, g[0]], hint="gemm_grad_b", alpha=alpha, transA=1 - ta)
        grads[1] = ctx.op("Transpose", [gb], perm=[1, 0]) if tb else gb
    if len(node.input) > 2 and wants[2]:
        gc = ctx.op("Mul", [g[0], ctx.scalar(beta, node.output[0])])
        grads[2] = ctx.unbroadcast(gc, node.output[0], node.input[2], node)
    return grads


@rule("MatMul")
def matmul(ctx, node, g, wants, weight: str | None = None):
    a, b = node.input[:2]  # MatMulInteger's zero points follow
    if weight:
        b = weight
    out = node.output[0]
    if len(ctx.shape(a)) < 2 or len(ctx.shape(b)) < 2:
        ctx.fail(node, "MatMul with 1-D operands is not supported")
    ga = gb = None
    if wants[0]:
        ga = ctx.unbroadcast(ctx.op("MatMul", [g[0], _transposed(ctx, b)], hint="matmul_grad"), out, a, node)
    if wants[1]:
        gb = ctx.unbroadcast(ctx.op("MatMul", [_transposed(ctx, a), g[0]], hint="matmul_grad_b"), out, b, node)
    return [ga, gb]


@rule("BatchNormalization")
def batch_norm(ctx, node, g, wants):
    """Inference BN is y = x * scale / sqrt(var + eps) + const: the gradient is a per-channel factor."""
    if ctx.attr(node, "training_mode", 0):
        ctx.fail(node, "training-mode BatchNormalization")
    x, scale, _, _, var = node.input[:5]
    eps = ctx.attr(node, "epsilon", 1e-5)
    rank = len(ctx.shape(x))
    s, v = ctx.const(scale), ctx.const(var)
    if s is not None and v is not None:
        factor = (s.astype(np.float64) / np.sqrt(v.astype(np.float64) + eps))
        f = ctx.tensor(factor.reshape((-1,) + (1,) * (rank - 2)), x, "bn_factor")
    else:
        denom = ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(eps, x)])])
        f = ctx.op("Reshape", [ctx.op("Div", [scale, denom]), ctx.ints([-1] + [1] * (rank - 2))])
    return [ctx.op("Mul", [g[0], f], hint="bn_grad")] + [None] * (len(node.input) - 1)

