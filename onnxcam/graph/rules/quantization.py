"""Quantized ops: straight-through. Rounding has zero derivative almost everywhere, so an exact rule
would zero every gradient of a quantized graph; the standard estimator treats quantization as
identity and the integer op as the float op on the dequantized operands.

* QDQ (static INT8): the cotangent passes unchanged through QuantizeLinear and DequantizeLinear
  (the scales cancel).
* Dynamic INT8: DynamicQuantizeLinear (y = x / s + z) passes g / s on to x, the run-time scale s
  treated as a constant (backward.py does not propagate into it); ConvInteger / MatMulInteger
  (integer output o = op(y - z, W - zw)) pass back the float op's VJP with weights W - zw. With
  the Mul by s * sw that follows them, x receives exactly the VJP of the float op with the
  dequantized weights sw (W - zw), as for QDQ. Gradients are float32 even on integer tensors.
"""
from __future__ import annotations

import numpy as np

from .linear import conv, matmul
from .registry import registry

RULES, rule = registry()


@rule("QuantizeLinear", "DequantizeLinear")
def straight_through(ctx, node, g, wants):
    return [g[0]] + [None] * (len(node.input) - 1)


@rule("DynamicQuantizeLinear")
def dynamic_quantize(ctx, node, g, wants):
    if g[0] is None:
        return [None]
    return [ctx.op("Div", [g[0], node.output[1]], hint="dql_grad")]


def _float_weight(ctx, node, weight_index: int, channel_axis: int, rank: int) -> str:
    """W - zero_point as a float32 constant (per-tensor or per-output-channel zero point)."""
    w = ctx.const(node.input[weight_index])
    if w is None:
        ctx.fail(node, "integer op with a weight computed at run time")
    zp = np.zeros((), np.float64)
    if len(node.input) > weight_index + 2 and node.input[weight_index + 2]:
        zp = ctx.const(node.input[weight_index + 2])
        if zp is None:
            ctx.fail(node, "integer op with a weight zero point computed at run time")
        zp = zp.astype(np.float64)
        if zp.ndim == 1 and zp.size > 1:
            shape = [1] * rank
            shape[channel_axis] = -1
            zp = zp.reshape(shape)
    return ctx.float32(w.astype(np.float64) - zp, "dequantized_weight")


@rule("ConvInteger")
def conv_integer(ctx, node, g, wants):
    weight = _float_weight(ctx, node, 1, 0, len(ctx.shape(node.input[1])))
    return conv(ctx, node, g, wants, weight=weight)


@rule("MatMulInteger")
def matmul_integer(ctx, node, g, wants):
    weight = _float_weight(ctx, node, 1, 1, len(ctx.shape(node.input[1])))
    return matmul(ctx, node, g, [wants[0], False], weight=weight) + [None] * (len(node.input) - 2)
