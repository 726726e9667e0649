"""DeepLIFT's rescale rule (Shrikumar et al., ICML 2017) as a rule set over the backward engine,
in Captum's multiplier form (captum.attr.DeepLift).

DeepLIFT explains S(x) − S(x̄) for a reference input x̄ (the baseline). It backpropagates
*multipliers* m = ΔS/Δt instead of gradients: linear ops (Conv, Gemm, MatMul, Add, BatchNorm,
average pooling, reshaping) pass them exactly as their gradient does, since Δ of a linear map is
the map of Δ; a nonlinearity y = f(x) replaces its derivative by the secant
m_x = m_y · (y − ȳ) / (x − x̄) (the rescale rule), or by the derivative where |x − x̄| < eps
(1e-10, Captum's). MaxPool follows Captum's rule: with M = max(y, ȳ), the share m_y · (M − ȳ) goes
to the winners of x and m_y · (y − M) to the winners of x̄, the sum divided by x − x̄. The input
attribution is (x − x̄) ⊙ m_input, and Σ attribution = S(x) − S(x̄) (completeness, "summation to
delta") wherever every nonlinearity on the path has a rule here; any other op passes its plain
gradient (as Captum does for ops it does not hook), and the reported completeness says how far
that took the sum.

x̄ and ȳ of every rescaled node are the reference's activations: one forward run of the baseline
before the graph is built, baked into the graph as constants [1, ...] that broadcast over the batch
(so the baseline is one image for all: zero or a black photo).
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from . import RULES as GRADIENT_RULES

#: Elementwise nonlinearities of one live input that take the rescale rule (Captum's ReLU, ELU,
#: LeakyReLU, Sigmoid, Tanh, Softplus, and the other monotone ONNX activations).
RESCALE = ("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus",
           "Softsign", "Clip", "Erf")
EPS = 1e-10


def reference_tensors(proto) -> list[str]:
    """The tensors whose reference values the rules read: inputs and outputs of every rescaled
    node and MaxPool of the graph."""
    names = []
    for node in proto.graph.node:
        if node.op_type in RESCALE or node.op_type == "MaxPool":
            names += [node.input[0], node.output[0]]
    return list(dict.fromkeys(names))


def _secant(ctx, node, x, x_ref, delta_out, plain):
    """plain where |x − x̄| < EPS, else delta_out / (x − x̄)."""
    dx = ctx.op("Sub", [x, x_ref], hint="deeplift_dx")
    small = ctx.op("Less", [ctx.op("Abs", [dx]), ctx.scalar(EPS, x)])
    safe = ctx.op("Where", [small, ctx.scalar(1.0, x), dx])
    return ctx.op("Where", [small, plain, ctx.op("Div", [delta_out, safe])], hint="deeplift_m")


def deeplift_rules(references: dict[str, np.ndarray]) -> dict:
    """The rule table: the gradient rules with the rescale rule on RESCALE ops and Captum's
    MaxPool rule. references: {tensor: its value [1, ...] at the baseline} (reference_tensors)."""
    def ref(ctx, name):
        value = references[name]
        const = ctx.tensor(value, name, "deeplift_ref")
        if value.ndim == 0 or value.shape[0] == 1:
            return const   # broadcasts over the batch
        # a tensor that folds the batch into its first axis (MobileViT's unfold: [N·P, ...], batch
        # outermost) holds P rows at the batch-1 baseline: repeat them N = first axis / P times
        first = ctx.op("Slice", [ctx.shape_of(name), ctx.ints([0]), ctx.ints([1])])
        reps = ctx.op("Concat", [ctx.op("Div", [first, ctx.ints([value.shape[0]])]),
                                 ctx.ints([1] * (value.ndim - 1))], axis=0)
        return ctx.op("Tile", [const, reps], hint="deeplift_ref")

    def rescale(ctx, node, g, wants):
        plain = GRADIENT_RULES[node.op_type](ctx, node, g, wants)
        if not wants[0] or plain[0] is None:
            return plain
        x, y = node.input[0], node.output[0]
        dy = ctx.op("Sub", [y, ref(ctx, y)], hint="deeplift_dy")
        return [_secant(ctx, node, x, ref(ctx, x), ctx.op("Mul", [g[0], dy]), plain[0])] + list(plain[1:])

    def max_pool(ctx, node, g, wants):
        pool = GRADIENT_RULES["MaxPool"]
        plain = pool(ctx, node, g, wants)
        x, y = node.input[0], node.output[0]
        x_ref = ctx.op("Expand", [ref(ctx, x), ctx.shape_of(x)], hint="deeplift_ref_in")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        y_ref, winners = ctx.b.op("MaxPool", [x_ref], "deeplift_ref_pool", outputs=2, **attrs)
        ctx.types[y_ref] = ctx.types.get(x, 1)
        top = ctx.op("Max", [y, y_ref])
        to_x = ctx.op("Mul", [g[0], ctx.op("Sub", [top, y_ref])])
        to_ref = ctx.op("Mul", [g[0], ctx.op("Sub", [y, top])])
        at_ref = helper.make_node("MaxPool", [x_ref], [y_ref, winners])
        moved = ctx.op("Add", [pool(ctx, node, [to_x], wants)[0], pool(ctx, at_ref, [to_ref], [True])[0]])
        return [_secant(ctx, node, x, x_ref, moved, plain[0])]

    table = dict(GRADIENT_RULES)
    table.update({op: rescale for op in RESCALE if op in GRADIENT_RULES})
    table["MaxPool"] = max_pool
    return table
