"""AttnLRP (Achtibat et al., ICML 2024): the LRP rules for what attention adds to a network.

The paper's rules, in the form our engine propagates (relevance R at a tensor, not gradients):

- bilinear MatMul y = a @ b, both operands activations (q·kᵀ, attention·v): the ε-rule over the
  contracted axis gives each product a_ji·b_ik its share of R_jk, and the uniform rule splits that
  share equally between the two factors: s = R / stabilize(y), R_a = ½ a ⊙ (s bᵀ),
  R_b = ½ b ⊙ (aᵀ s). Conservative: Σ R_a + Σ R_b = Σ R (up to the stabilizer).
- Softmax y = softmax(x): the first-order Taylor expansion at x, R_x = x ⊙ (R − y Σ R), the sum
  along the softmax axis. Not conservative (Σ R_x = Σ x R − (Σ y x) Σ R per row): the paper's bias
  term takes the rest.
- LayerNormalization y = (x − μ)/σ ⊙ w + b with σ held constant (the identity rule on the
  division by σ): the map is then linear in x and the ε-rule applies, s = R / stabilize(y),
  R_x = x ⊙ (t − mean(t)) / σ with t = s ⊙ w. Σ R_x = Σ R − Σ b ⊙ s: only the bias absorbs.
- Element-wise activations (Gelu, the Erf form of GELU): the identity rule, as lrp.py already does
  for every composite (PASS_THROUGH; the GELU Mul gives all relevance to its signal).
- Linear layers (Conv, Gemm, MatMul with a constant operand): the composite's rule (ε for
  "attnlrp").

A decomposed LayerNorm (ReduceMean, Sub, Pow, Sqrt, Div) needs no rule of its own: lrp.py's Div rule
gives all relevance to the numerator (σ constant) and the Sub/ReduceMean z-rules give the same
x ⊙ (s − mean(s)) as above.

lxt, the authors' package, computes the same in a Gradient×Input framework (gradients halved after
each bilinear matmul, σ detached in LayerNorm, GELU's gradient replaced by f(x)/x);
tests/test_attnlrp.py checks our input relevance against it on the same weights.
"""
from __future__ import annotations

import onnx

from . import RULES as GRADIENT_RULES
from ..backward import _live_tensors
from ..expose import elem_types
from .lrp import _divide


def attention_rules(composite, table: dict) -> dict:
    """AttnLRP's rules for Softmax, LayerNormalization and MatMul, to update a composite's table
    (lrp.relevance_rules calls this when composite.attention): a MatMul with a constant operand keeps
    the composite's linear rule (`table["MatMul"]`)."""
    linear = table["MatMul"]
    eps = composite.norm_epsilon

    def matmul(ctx, node, r, wants):
        if len(wants) >= 2 and wants[0] and wants[1]:
            return bilinear_matmul(ctx, node, r[0], eps)
        return linear(ctx, node, r, wants)

    return {"MatMul": matmul, "Softmax": lambda ctx, node, r, wants: [softmax(ctx, node, r[0])],
            "LayerNormalization": lambda ctx, node, r, wants: layer_norm(ctx, node, r[0], eps),
            "Attention": lambda ctx, node, r, wants: fused_attention(ctx, node, r[0], wants, eps)}


def bilinear_matmul(ctx, node, r: str, eps: float) -> list[str]:
    """ε-rule over the contracted axis, then half of each product's share to each factor."""
    a, b = node.input[:2]
    s = _divide(ctx, r, node.output[0], eps)
    ga, gb = GRADIENT_RULES["MatMul"](ctx, node, [s], [True, True])
    half = ctx.scalar(0.5, a)
    return [ctx.op("Mul", [ctx.op("Mul", [a, ga]), half], hint="attnlrp_uniform_a"),
            ctx.op("Mul", [ctx.op("Mul", [b, gb]), half], hint="attnlrp_uniform_b")]


def softmax(ctx, node, r: str) -> str:
    """R_x = x ⊙ (R − y Σ R). Masked logits (−inf, where y = 0 and R = 0) give 0, not NaN."""
    x, y = node.input[0], node.output[0]
    axis = ctx.attr(node, "axis", -1) % len(ctx.shape(x))
    total = ctx.b.reduce("ReduceSum", r, [axis], keepdims=1)
    finite = ctx.op("Where", [ctx.op("IsInf", [x]), ctx.scalar(0.0, x), x])
    return ctx.op("Mul", [finite, ctx.op("Sub", [r, ctx.op("Mul", [y, total])])], hint="attnlrp_softmax")


def layer_norm(ctx, node, r: str, eps: float) -> list[str | None]:
    """ε-rule on y = (x − μ)/σ ⊙ w + b with σ a constant (recomputed from x)."""
    x, scale = node.input[:2]
    rank = len(ctx.shape(x))
    if not rank:
        ctx.fail(node, "LayerNormalization needs the input's rank (shape inference gave none)")
    axes = list(range(ctx.attr(node, "axis", -1) % rank, rank))
    t = ctx.op("Mul", [_divide(ctx, r, node.output[0], eps), scale])
    centered = ctx.op("Sub", [t, ctx.b.reduce("ReduceMean", t, axes)])
    dev = ctx.op("Sub", [x, ctx.b.reduce("ReduceMean", x, axes)])
    var = ctx.b.reduce("ReduceMean", ctx.op("Mul", [dev, dev]), axes)
    std = ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(ctx.attr(node, "epsilon", 1e-5), x)])])
    rx = ctx.op("Mul", [x, ctx.op("Div", [centered, std])], hint="attnlrp_layernorm")
    return [rx] + [None] * (len(node.input) - 1)


def _uniform(ctx, a: str, b: str, out: str, r: str, eps: float) -> tuple[str, str]:
    """The bilinear rule on out = a @ b, for tensors the graph has no MatMul node for."""
    s = _divide(ctx, r, out, eps)
    half = ctx.scalar(0.5, a)
    perm = lambda name: ctx.op("Transpose", [name], perm=[0, 1, 3, 2])  # noqa: E731
    ra = ctx.op("Mul", [ctx.op("Mul", [a, ctx.op("MatMul", [s, perm(b)])]), half], hint="attnlrp_uniform_a")
    rb = ctx.op("Mul", [ctx.op("Mul", [b, ctx.op("MatMul", [perm(a), s])]), half], hint="attnlrp_uniform_b")
    return ra, rb


def fused_attention(ctx, node, r: str, wants, eps: float) -> list[str | None]:
    """ONNX Attention (opset 23; the dynamo exporter writes it for scaled_dot_product_attention from
    opset 23 on): the same rules on its parts, which attention.recompute rebuilds in the backward
    graph (and refuses what it does not cover: caches, softcap, grouped heads, 3-D inputs):
    scores = (Q Kᵀ)·scale, logits z = scores with the masks, A = softmax(z), Y = A V."""
    from .attention import recompute

    q, k, v = node.input[:3]
    qk, _, scaled, logits, probs = recompute(ctx, node)
    r_probs, r_v = _uniform(ctx, probs, v, node.output[0], r, eps)
    total = ctx.b.reduce("ReduceSum", r_probs, [3], keepdims=1)
    finite = ctx.op("Where", [ctx.op("IsInf", [logits]), ctx.scalar(0.0, q), logits])
    r_logits = ctx.op("Mul", [finite, ctx.op("Sub", [r_probs, ctx.op("Mul", [probs, total])])])
    if logits != scaled:   # a mask's z-rule: an added constant keeps its share (-inf entries have none)
        r_logits = ctx.op("Mul", [scaled, _divide(ctx, r_logits, logits, eps)])
    r_q, r_kt = _uniform(ctx, q, ctx.op("Transpose", [k], perm=[0, 1, 3, 2]), qk, r_logits, eps)
    out = [r_q, ctx.op("Transpose", [r_kt], perm=[0, 1, 3, 2]), r_v] + [None] * (len(node.input) - 3)
    return [g if w else None for g, w in zip(out, wants)]


def has_attention(proto: onnx.ModelProto, input_name: str) -> bool:
    """True when a MatMul multiplies two tensors that both depend on the input (attention's q·kᵀ
    and attention·v), or an ONNX Attention op sees the input: the CNN composites cannot explain
    such a graph, AttnLRP can."""
    live = _live_tensors(proto, [input_name], elem_types(proto))
    return any((n.op_type == "MatMul" and len(n.input) >= 2 and n.input[0] in live and n.input[1] in live)
               or (n.op_type == "Attention" and any(i in live for i in n.input[:3]))
               for n in proto.graph.node)


def default_composite(model, cnn: str) -> str:
    """The composite a relevance method uses when none is given: "attnlrp" for a graph with
    attention (model: an intake Model), `cnn` otherwise. The graph walk runs once per model, not
    on every explain call."""
    if model.attention is None:
        model.attention = has_attention(model.proto, model.input_name)
    return "attnlrp" if model.attention else cnn
