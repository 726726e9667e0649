"""Element-wise ops: activations (gradient = g ⊙ f'(x)) and broadcasting arithmetic (un-broadcast
with ReduceSum). Kink conventions follow PyTorch (ReLU'(0) = 0, ReLU6/Hardtanh pass strictly inside
the range) so gradients match autograd exactly."""
from __future__ import annotations

import math

import onnx

from ...intake.catalog import FLOAT_TYPES
from .registry import registry

RULES, rule = registry()


def _mask(ctx, cond, like):
    return ctx.op("Cast", [cond], hint="mask", to=ctx.types.get(like, 1))


@rule("Identity", "Dropout")
def identity(ctx, node, g, wants):
    return [g[0]] + [None] * (len(node.input) - 1)


@rule("Cast")
def cast(ctx, node, g, wants):
    """The cotangent takes the input's float type; an integer input (the int32 output of
    ConvInteger/MatMulInteger) keeps a float32 cotangent (straight-through, see quantization.py)."""
    source = ctx.types.get(node.input[0], onnx.TensorProto.FLOAT)
    return [ctx.op("Cast", [g[0]], to=source if source in FLOAT_TYPES else onnx.TensorProto.FLOAT)]


@rule("Relu")
def relu(ctx, node, g, wants):
    y = node.output[0]
    return [ctx.op("Mul", [g[0], _mask(ctx, ctx.op("Greater", [y, ctx.scalar(0, y)]), y)], hint="relu_grad")]


@rule("LeakyRelu")
def leaky_relu(ctx, node, g, wants):
    x = node.input[0]
    slope = ctx.op("Where", [ctx.op("Greater", [x, ctx.scalar(0, x)]), ctx.scalar(1, x),
                             ctx.scalar(ctx.attr(node, "alpha", 0.01), x)])
    return [ctx.op("Mul", [g[0], slope], hint="leaky_grad")]


@rule("PRelu")
def prelu(ctx, node, g, wants):
    x, a = node.input
    positive = ctx.op("Greater", [x, ctx.scalar(0, x)])
    gx = ctx.op("Mul", [g[0], ctx.op("Where", [positive, ctx.scalar(1, x), a])], hint="prelu_grad")
    ga = None
    if wants[1]:
        ga = ctx.unbroadcast(ctx.op("Mul", [g[0], ctx.op("Where", [positive, ctx.scalar(0, x), x])]),
                             node.output[0], a, node)
    return [gx, ga]


@rule("Clip")
def clip(ctx, node, g, wants):
    """Passes strictly inside (min, max), as PyTorch's hardtanh/ReLU6 backward."""
    x = node.input[0]
    keep = None
    bounds = list(node.input[1:]) + [""] * (3 - len(node.input))
    for bound, op in ((bounds[0], "Greater"), (bounds[1], "Less")):
        if bound:
            cond = ctx.op(op, [x, bound])
            keep = cond if keep is None else ctx.op("And", [keep, cond])
    if keep is None:
        return [g[0]] + [None] * (len(node.input) - 1)
    return [ctx.op("Mul", [g[0], _mask(ctx, keep, x)], hint="clip_grad")] + [None] * (len(node.input) - 1)


@rule("Sigmoid")
def sigmoid(ctx, node, g, wants):
    y = node.output[0]
    dy = ctx.op("Mul", [y, ctx.op("Sub", [ctx.scalar(1, y), y])])
    return [ctx.op("Mul", [g[0], dy], hint="sigmoid_grad")]


@rule("HardSigmoid")
def hard_sigmoid(ctx, node, g, wants):
    x = node.input[0]
    alpha, beta = ctx.attr(node, "alpha", 0.2), ctx.attr(node, "beta", 0.5)
    z = ctx.op("Add", [ctx.op("Mul", [x, ctx.scalar(alpha, x)]), ctx.scalar(beta, x)])
    inside = ctx.op("And", [ctx.op("Greater", [z, ctx.scalar(0, x)]), ctx.op("Less", [z, ctx.scalar(1, x)])])
    return [ctx.op("Mul", [g[0], ctx.op("Mul", [_mask(ctx, inside, x), ctx.scalar(alpha, x)])],
                   hint="hardsigmoid_grad")]


@rule("HardSwish")
def hard_swish(ctx, node, g, wants):
    """PyTorch: 0 for x < -3, x/3 + 1/2 for -3 <= x <= 3, 1 above."""
    x = node.input[0]
    mid = ctx.op("Add", [ctx.op("Div", [x, ctx.scalar(3, x)]), ctx.scalar(0.5, x)])
    d = ctx.op("Where", [ctx.op("Less", [x, ctx.scalar(-3, x)]), ctx.scalar(0, x),
                         ctx.op("Where", [ctx.op("Greater", [x, ctx.scalar(3, x)]), ctx.scalar(1, x), mid])])
    return [ctx.op("Mul", [g[0], d], hint="hardswish_grad")]


@rule("Tanh")
def tanh(ctx, node, g, wants):
    y = node.output[0]
    return [ctx.op("Mul", [g[0], ctx.op("Sub", [ctx.scalar(1, y), ctx.op("Mul", [y, y])])], hint="tanh_grad")]


@rule("Erf")
def erf(ctx, node, g, wants):
    x = node.input[0]
    d = ctx.op("Mul", [ctx.op("Exp", [ctx.op("Neg", [ctx.op("Mul", [x, x])])]),
                       ctx.scalar(2 / math.sqrt(math.pi), x)])
    return [ctx.op("Mul", [g[0], d], hint="erf_grad")]


@rule("Gelu")
def gelu(ctx, node, g, wants):
    """Opset 20's Gelu. Exact: y = x Φ(x), y' = Φ(x) + x φ(x). approximate="tanh": y = x (1 + t) / 2
    with t = tanh(√(2/π) (x + 0.044715 x³)), y' = (1 + t) / 2 + x (1 - t²) √(2/π) (1 + 3 · 0.044715 x²) / 2."""
    x = node.input[0]
    approx = ctx.attr(node, "approximate", b"none")
    xx = ctx.op("Mul", [x, x])
    if (approx.decode() if isinstance(approx, bytes) else approx) == "tanh":
        k, c = math.sqrt(2 / math.pi), 0.044715
        inner = ctx.op("Mul", [ctx.op("Add", [ctx.scalar(1, x), ctx.op("Mul", [xx, ctx.scalar(c, x)])]), x])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, ctx.scalar(k, x)])])
        slope = ctx.op("Mul", [ctx.op("Add", [ctx.scalar(1, x), ctx.op("Mul", [xx, ctx.scalar(3 * c, x)])]),
                               ctx.scalar(k / 2, x)])
        d = ctx.op("Add", [ctx.op("Mul", [ctx.op("Add", [ctx.scalar(1, x), t]), ctx.scalar(0.5, x)]),
                           ctx.op("Mul", [ctx.op("Mul", [x, ctx.op("Sub", [ctx.scalar(1, x), ctx.op("Mul", [t, t])])]),
                                          slope])])
    else:
        cdf = ctx.op("Mul", [ctx.op("Add", [ctx.scalar(1, x), ctx.op("Erf", [ctx.op("Mul", [x, ctx.scalar(
            1 / math.sqrt(2), x)])])]), ctx.scalar(0.5, x)])
        pdf = ctx.op("Mul", [ctx.op("Exp", [ctx.op("Mul", [xx, ctx.scalar(-0.5, x)])]),
                             ctx.scalar(1 / math.sqrt(2 * math.pi), x)])
        d = ctx.op("Add", [cdf, ctx.op("Mul", [x, pdf])])
    return [ctx.op("Mul", [g[0], d], hint="gelu_grad")]


@rule("Exp")
def exp(ctx, node, g, wants):
    return [ctx.op("Mul", [g[0], node.output[0]], hint="exp_grad")]


@rule("Log")
def log(ctx, node, g, wants):
    return [ctx.op("Div", [g[0], node.input[0]], hint="log_grad")]


@rule("Sqrt")
def sqrt(ctx, node, g, wants):
    y = node.output[0]
    return [ctx.op("Div", [g[0], ctx.op("Mul", [y, ctx.scalar(2, y)])], hint="sqrt_grad")]


@rule("Reciprocal")
def reciprocal(ctx, node, g, wants):
    y = node.output[0]
    return [ctx.op("Neg", [ctx.op("Mul", [g[0], ctx.op("Mul", [y, y])])], hint="reciprocal_grad")]


@rule("Neg")
def neg(ctx, node, g, wants):
    return [ctx.op("Neg", [g[0]])]


@rule("Abs")
def abs_(ctx, node, g, wants):
    return [ctx.op("Mul", [g[0], ctx.op("Sign", [node.input[0]])], hint="abs_grad")]


@rule("Softplus")
def softplus(ctx, node, g, wants):
    return [ctx.op("Mul", [g[0], ctx.op("Sigmoid", [node.input[0]])], hint="softplus_grad")]


@rule("Pow")
def pow_(ctx, node, g, wants):
    x, p = node.input
    exponent = ctx.const(p)
    if wants[1] or exponent is None:
        ctx.fail(node, "only a constant exponent is supported")
    d = ctx.op("Mul", [ctx.op("Pow", [x, ctx.tensor(exponent - 1, x)]), ctx.tensor(exponent, x)])
    return [ctx.unbroadcast(ctx.op("Mul", [g[0], d], hint="pow_grad"), node.output[0], x, node), None]


@rule("Add", "Sub")
def add_sub(ctx, node, g, wants):
    a, b = node.input
    out = node.output[0]
    ga = ctx.unbroadcast(g[0], out, a, node) if wants[0] else None
    gb = None
    if wants[1]:
        gb = g[0] if node.op_type == "Add" else ctx.op("Neg", [g[0]])
        gb = ctx.unbroadcast(gb, out, b, node)
    return [ga, gb]


@rule("Sum")
def sum_(ctx, node, g, wants):
    return [ctx.unbroadcast(g[0], node.output[0], i, node) if w else None for i, w in zip(node.input, wants)]


@rule("Mul")
def mul(ctx, node, g, wants):
    a, b = node.input
    out = node.output[0]
    ga = ctx.unbroadcast(ctx.op("Mul", [g[0], b]), out, a, node) if wants[0] else None
    gb = ctx.unbroadcast(ctx.op("Mul", [g[0], a]), out, b, node) if wants[1] else None
    return [ga, gb]


@rule("Div")
def div(ctx, node, g, wants):
    a, b = node.input
    out = node.output[0]
    ga = ctx.unbroadcast(ctx.op("Div", [g[0], b]), out, a, node) if wants[0] else None
    gb = None
    if wants[1]:
        gb = ctx.op("Neg", [ctx.op("Div", [ctx.op("Mul", [g[0], out]), b])])
        gb = ctx.unbroadcast(gb, out, b, node)
    return [ga, gb]


@rule("Where")
def where(ctx, node, g, wants):
    cond, a, b = node.input
    out = node.output[0]
    zero = ctx.zeros_like(out)
    ga = ctx.unbroadcast(ctx.op("Where", [cond, g[0], zero]), out, a, node) if wants[1] else None
    gb = ctx.unbroadcast(ctx.op("Where", [cond, zero, g[0]]), out, b, node) if wants[2] else None
    return [None, ga, gb]


@rule("Elu")
def elu(ctx, node, g, wants):
    """1 for x > 0, else y + α (= α eˣ), as PyTorch's elu backward."""
    x, y = node.input[0], node.output[0]
    below = ctx.op("Add", [y, ctx.scalar(ctx.attr(node, "alpha", 1.0), y)])
    d = ctx.op("Where", [ctx.op("Greater", [x, ctx.scalar(0, x)]), ctx.scalar(1, x), below])
    return [ctx.op("Mul", [g[0], d], hint="elu_grad")]


@rule("Selu")
def selu(ctx, node, g, wants):
    """γ for x > 0, else y + γα."""
    x, y = node.input[0], node.output[0]
    alpha = ctx.attr(node, "alpha", 1.67326319217681884765625)
    gamma = ctx.attr(node, "gamma", 1.05070102214813232421875)
    below = ctx.op("Add", [y, ctx.scalar(alpha * gamma, y)])
    d = ctx.op("Where", [ctx.op("Greater", [x, ctx.scalar(0, x)]), ctx.scalar(gamma, x), below])
    return [ctx.op("Mul", [g[0], d], hint="selu_grad")]


@rule("Mish")
def mish(ctx, node, g, wants):
    """y = x tanh(softplus x): y' = tanh(sp) + x σ(x) (1 - tanh²(sp))."""
    x = node.input[0]
    t = ctx.op("Tanh", [ctx.op("Softplus", [x])])
    sech2 = ctx.op("Sub", [ctx.scalar(1, x), ctx.op("Mul", [t, t])])
    d = ctx.op("Add", [t, ctx.op("Mul", [ctx.op("Mul", [x, ctx.op("Sigmoid", [x])]), sech2])])
    return [ctx.op("Mul", [g[0], d], hint="mish_grad")]


@rule("Softsign")
def softsign(ctx, node, g, wants):
    x = node.input[0]
    denom = ctx.op("Add", [ctx.scalar(1, x), ctx.op("Abs", [x])])
    return [ctx.op("Div", [g[0], ctx.op("Mul", [denom, denom])], hint="softsign_grad")]


@rule("Max", "Min")
def max_min(ctx, node, g, wants):
    """The cotangent goes to the inputs that equal the output, shared evenly by ties (PyTorch's
    maximum/minimum give each of two tied inputs half)."""
    out = node.output[0]
    hits = [_mask(ctx, ctx.op("Equal", [i, out]), out) for i in node.input]
    count = hits[0] if len(hits) == 1 else ctx.op("Sum", hits)
    share = ctx.op("Div", [g[0], count], hint="extreme_share")
    return [ctx.unbroadcast(ctx.op("Mul", [share, h]), out, i, node) if w else None
            for i, h, w in zip(node.input, hits, wants)]
