"""Opset 23's fused Attention op (the dynamo exporter writes it for scaled_dot_product_attention
from opset 23 on): Y = softmax(scale Q Kᵀ + mask) V per head, 4-D Q, K, V [B, heads, S, d].

The backward recomputes the probabilities P in the graph and applies the chain rule of its three
steps: dV = Pᵀ G, dP = G Vᵀ, dZ = P ⊙ (dP − Σ_k dP ⊙ P), dQ = scale dZ K, dK = scale dZᵀ Q. Masks
(boolean or additive, is_causal) only change P; grouped key/value heads, softcap, 3-D inputs and
past key/values are refused with a message."""
from __future__ import annotations

import math

import numpy as np
import onnx

from .registry import registry

RULES, rule = registry()


def _swap(ctx, name):
    return ctx.op("Transpose", [name], perm=[0, 1, 3, 2])


@rule("Attention")
def attention(ctx, node, g, wants):
    q, k, v = node.input[:3]
    if any(g[1:]):
        ctx.fail(node, "Attention with past key/values (a decoder cache)")
    _, scale, _, _, p = recompute(ctx, node)
    grads = [None] * len(node.input)
    dp = ctx.op("MatMul", [g[0], _swap(ctx, v)])
    dz = ctx.op("Mul", [p, ctx.op("Sub", [dp, ctx.b.reduce("ReduceSum", ctx.op("Mul", [dp, p]), [-1], keepdims=1)])])
    dz = ctx.op("Mul", [dz, ctx.scalar(scale, q)], hint="attn_dlogits")
    if wants[0]:
        grads[0] = ctx.op("MatMul", [dz, k], hint="attn_grad_q")
    if wants[1]:
        grads[1] = ctx.op("MatMul", [_swap(ctx, dz), q], hint="attn_grad_k")
    if wants[2]:
        grads[2] = ctx.op("MatMul", [_swap(ctx, p), g[0]], hint="attn_grad_v")
    return grads


def recompute(ctx, node):
    """The node's inner tensors rebuilt in the backward graph, after refusing what the rules do not
    cover: (Q Kᵀ, scale, scale Q Kᵀ, logits z with the masks applied, probabilities P = softmax(z)).
    The LRP rule (lrp_attention.py) reads them too."""
    q, k, v = node.input[:3]
    mask = node.input[3] if len(node.input) > 3 else ""
    if any(node.input[4:]):
        ctx.fail(node, "Attention with past key/values (a decoder cache)")
    if ctx.attr(node, "softcap", 0.0):
        ctx.fail(node, "Attention with softcap")
    shapes = [ctx.shape(t) for t in (q, k, v)]
    if any(len(s) != 4 for s in shapes):
        ctx.fail(node, "Attention with 3-D inputs (heads folded into the hidden axis); export 4-D Q, K, V")
    if shapes[0][1] != shapes[1][1] or not isinstance(shapes[0][3], int):
        ctx.fail(node, "Attention with grouped key/value heads or an unknown head size")
    scale = ctx.attr(node, "scale", None) or 1.0 / math.sqrt(shapes[0][3])
    qk = ctx.op("MatMul", [q, _swap(ctx, k)])
    z = scaled = ctx.op("Mul", [qk, ctx.scalar(scale, q)], hint="attn_logits")
    if ctx.attr(node, "is_causal", 0):
        sq, sk = shapes[0][2], shapes[1][2]
        if not (isinstance(sq, int) and isinstance(sk, int)):
            ctx.fail(node, "causal Attention with run-time sequence lengths")
        z = ctx.op("Add", [z, ctx.tensor(np.where(np.tril(np.ones((sq, sk), bool)), 0.0, -np.inf), q, "causal")])
    if mask:
        if ctx.types.get(mask) == onnx.TensorProto.BOOL:
            z = ctx.op("Where", [mask, z, ctx.scalar(-np.inf, q)])
        else:
            z = ctx.op("Add", [z, mask])
    p = ctx.op("Softmax", [z], hint="attn_probs", axis=-1)
    return qk, scale, scaled, z, p
