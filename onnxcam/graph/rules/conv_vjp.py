"""The VJP of a stride-1 Conv with a constant weight, emitted as a Conv instead of a ConvTranspose.

For stride 1, ConvTranspose(g, W, pads p) equals Conv(g, W', pads dil·(k-1) - p) where W' swaps
the input and output channels of W (per group) and flips its kernel. Both compute the same sums;
onnxruntime runs the Conv much faster on CPU (ConvTranspose has no NCHWc kernel, so each one also
costs two layout reorders, and falls back to GEMM + col2im). The LRP rules call VJPs only with
constant weights (W, W⁺, W⁻, ...), so W' is computed once at build time. Strided convs (and a
weight that is not a constant) keep the ConvTranspose of linear.py.
"""
from __future__ import annotations

import numpy as np

from .linear import conv, conv_geometry


def transposed_kernel(w: np.ndarray, group: int) -> np.ndarray:
    """W [Cout, Cin/g, *k] -> W' [Cin, Cout/g, *k]: channels swapped within each group, kernel flipped."""
    cout, cin_g = w.shape[:2]
    kernel = w.shape[2:]
    wt = w.reshape((group, cout // group, cin_g) + kernel).swapaxes(1, 2)
    wt = wt.reshape((group * cin_g, cout // group) + kernel)
    return np.ascontiguousarray(np.flip(wt, axis=tuple(range(2, w.ndim))))


def conv_vjp(ctx, node, s: str, w_name: str) -> str:
    """dx of `node` (a Conv) for cotangent `s` with weight `w_name` in place of the node's own."""
    x = node.input[0]
    w = ctx.folded(w_name)
    xs, ys, kernel, strides, dil, pads = conv_geometry(ctx, node, x, node.input[1], node.output[0])
    spatial = len(kernel)
    new_pads = [dil[i % spatial] * (kernel[i % spatial] - 1) - pads[i] for i in range(2 * spatial)]
    if w is None or any(st != 1 for st in strides) or min(new_pads) < 0:
        return conv(ctx, node, [s], [True] + [False] * (len(node.input) - 1), weight=w_name)[0]
    group = ctx.attr(node, "group", 1)
    cache = ctx.__dict__.setdefault("_conv_vjp_weights", {})
    if (w_name, group) not in cache:
        cache[(w_name, group)] = ctx.tensor(transposed_kernel(w, group), w_name, "vjp_w")
    return ctx.op("Conv", [s, cache[(w_name, group)]], hint="conv_vjp", strides=[1] * spatial,
                  pads=new_pads, dilations=dil, group=group, kernel_shape=kernel)
