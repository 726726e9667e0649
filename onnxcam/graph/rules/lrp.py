"""Layer-wise Relevance Propagation as rules over the backward engine (DESIGN §5).

Every rule for a linear op (Conv, ConvTranspose, Gemm, MatMul) is a modified gradient: run the op
on modified inputs and parameters, z_i = f(x_i; W_i), s = R / stabilize(Σ z_i), and
R_in = Σ_i x_i ⊙ VJP_x f(·; W_i)(s), reusing the linear ops' gradient rules with other weights.
Activations pass relevance through, pooling and Add split it in proportion to their inputs
(z-rule), MaxPool gives it to the winner, structural ops move it with the values. The formulas
follow Zennit's rules (stabilize(z) = z + ε·sign(z), sign(0) = +1); the Relevance-CAM recipe
follows its authors' code. Which rule a linear layer gets is the composite's choice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import helper

from . import RULES as GRADIENT_RULES
from .conv_vjp import conv_vjp
from .linear import conv, conv_transpose, gemm, matmul

LINEAR_VJP = {"Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm, "MatMul": matmul}
PASS_THROUGH = {"Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                "Erf", "Softplus", "Elu", "Selu", "Gelu", "Identity", "Dropout",
                "BatchNormalization", "LayerNormalization", "InstanceNormalization",
                "QuantizeLinear", "DequantizeLinear", "Softmax", "LogSoftmax", "Neg", "Abs", "Exp",
                "Sqrt", "Reciprocal", "Pow", "Log", "Mish", "Softsign", "GroupNormalization"}
MOVES_VALUES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
                "Pad", "Gather", "Expand", "MaxPool", "GlobalMaxPool", "Tile", "DepthToSpace", "SpaceToDepth"}
Z_RULE = {"AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Resize", "Add", "Sub", "Sum"}


@dataclass(frozen=True)
class Rule:
    """A linear-layer rule and its parameters (ε stabilizes, γ for gamma, α/β for alpha-beta)."""
    name: str
    epsilon: float = 1e-6
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    bias: str = "zennit"            # "zennit" (as Zennit), "none" (bias-free), "both" (zplus: raw b twice),
    #                                 "own" (zplus: the conv's own bias twice, BN shift left out, see bnfold)
    bounds: str = "preprocessing"   # zbox bounds: "preprocessing" (per channel) or "input" (min/max of x)


@dataclass
class Composite:
    """Which rule each linear layer gets: by output name, depth, 'first', then op type, then default."""
    name: str
    default: Rule
    by_op: dict = field(default_factory=dict)
    first: Rule | None = None
    by_name: dict = field(default_factory=dict)
    by_depth: dict = field(default_factory=dict)
    positive_pooling: bool = False   # Relevance-CAM: pooling z-rule on clamp(x, 0)
    bn_aware: bool = False           # split conv and folded BN as intake recorded (intake/bnfold.py)
    norm_epsilon: float = 1e-6       # stabilizer of the z-rule (pooling, Add)
    attention: bool = False          # AttnLRP's Softmax, LayerNorm and bilinear MatMul rules (lrp_attention.py)

    def rule_for(self, node, depth: int, is_first: bool) -> Rule:
        for key in node.output[:1]:
            if key in self.by_name:
                return self.by_name[key]
        if depth in self.by_depth:
            return self.by_depth[depth]
        if is_first and self.first is not None:
            return self.first
        return self.by_op.get(node.op_type, self.default)


_NONNEG_OPS = {"Relu", "Sigmoid", "HardSigmoid", "Softmax", "Abs", "Exp", "Sqrt"}
_KEEPS_SIGN = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax",
               "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
               "Identity", "Dropout", "Resize", "Add", "Mul", "Sum", "Expand", "Cast", "Pad"}


def nonnegative(ctx) -> set[str]:
    """Tensors that cannot be negative (ReLU outputs and what pooling, reshaping or adding them
    gives): their x⁻ passes are exactly zero and are not built. Computed once per graph."""
    if getattr(ctx, "_nonnegative", None) is None:
        known = set()
        for node in ctx.model.graph.node:
            op = node.op_type
            if op == "Clip":
                lo = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
                ok = lo is not None and float(lo) >= 0
            elif op in _NONNEG_OPS:
                ok = True
            elif op in _KEEPS_SIGN:
                data = [i for i in node.input if i and i not in ctx.consts]
                consts_ok = all(np.all(ctx.const(i) >= 0) for i in node.input if i in ctx.consts
                                and op in ("Add", "Mul", "Sum", "Concat"))
                ok = bool(data) and all(i in known for i in data) and consts_ok
            else:
                ok = False
            if ok:
                known.update(node.output[:1])
        ctx._nonnegative = known
    return ctx._nonnegative


def _stabilize(ctx, z, eps, nonneg=False):
    """z + ε·sign(z) with sign(0) = +1; with ε = 0, zero denominators give zero relevance.
    nonneg: z is provably >= 0 (z⁺ sums), so the sign is +1 everywhere: one Add, no Where."""
    if eps and nonneg:
        return ctx.op("Add", [z, ctx.scalar(eps, z)], hint="stabilized")
    if eps:
        sign = ctx.op("Where", [ctx.op("GreaterOrEqual", [z, ctx.scalar(0, z)]), ctx.scalar(eps, z),
                                ctx.scalar(-eps, z)])
        return ctx.op("Add", [z, sign], hint="stabilized")
    return ctx.op("Where", [ctx.op("Equal", [z, ctx.scalar(0, z)]), ctx.scalar(np.inf, z), z])


def _divide(ctx, r, z, eps, nonneg=False):
    return ctx.op("Div", [r, _stabilize(ctx, z, eps, nonneg)], hint="lrp_s")


def _linear_parts(ctx, node):
    x, w = node.input[:2]
    weight = ctx.folded(w)
    if weight is None and node.op_type == "MatMul":
        ctx.fail(node, "this MatMul multiplies two activations (attention); explain the model with the "
                 "attnlrp composite (--composite attnlrp), whose rules cover it")
    if weight is None:
        ctx.fail(node, "LRP needs weights that do not depend on the input")
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = ctx.folded(node.input[2])
        if bias is None:
            ctx.fail(node, "LRP needs a constant bias")
    return x, weight.astype(np.float64), None if bias is None else bias.astype(np.float64)


def _forward(ctx, node, x_mod, w_name, b_mod):
    """The node's op on modified input, weight (a tensor name) and bias, same attributes."""
    inputs = [x_mod, w_name]
    if b_mod is not None and node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        inputs.append(ctx.tensor(b_mod, node.input[1], "lrp_b"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    out = ctx.op(node.op_type, inputs, hint="lrp_z", **attrs)
    if b_mod is not None and node.op_type == "MatMul":
        out = ctx.op("Add", [out, ctx.tensor(b_mod, node.input[1], "lrp_b")])
    return out


def _vjp(ctx, node, s, w_name):
    if node.op_type == "Conv":
        return conv_vjp(ctx, node, s, w_name)
    return LINEAR_VJP[node.op_type](ctx, node, [s], [True] + [False] * (len(node.input) - 1),
                                    weight=w_name)[0]


def _pos(ctx, x):
    return ctx.op("Relu", [x], hint="x_pos")


def _neg(ctx, x):
    """min(x, 0): one pass (it was -relu(-x), three)."""
    return ctx.op("Min", [x, ctx.scalar(0, x)], hint="x_neg")


def _ones(ctx, x):
    return ctx.op("Add", [ctx.zeros_like(x), ctx.scalar(1, x)], hint="ones")


class _Layer:
    """One linear node as the rules see it: its input split into x⁺ and x⁻ (x⁻ = None when x is
    provably non-negative, so those passes are never built), and each modified weight stored
    once however many passes use it."""

    def __init__(self, ctx, node, x, split: bool = True):
        self.ctx, self.node = ctx, node
        self.halves = (x, None) if not split or x in nonnegative(ctx) else (_pos(ctx, x), _neg(ctx, x))
        self._weights: dict[str, str] = {}

    def weight(self, key: str, value: np.ndarray) -> str:
        if key not in self._weights:
            self._weights[key] = self.ctx.tensor(value, self.node.input[1], f"lrp_{key}")
        return self._weights[key]

    def z(self, wa: str, wb: str, ba=None, bb=None) -> str:
        """x⁺ through (wa, ba) plus x⁻ through (wb, bb)."""
        ctx, node = self.ctx, self.node
        xp, xn = self.halves
        z = _forward(ctx, node, xp, wa, ba)
        if xn is not None:
            return ctx.op("Add", [z, _forward(ctx, node, xn, wb, bb)])
        if bb is not None:  # a bias on the x⁻ pass stays when x⁻ = 0
            return ctx.op("Add", [z, ctx.tensor(bb.reshape(_bias_shape(ctx, node)), node.input[1], "lrp_b")])
        return z

    def relevance(self, s: str, wa: str, wb: str) -> str:
        """x⁺ ⊙ VJP(s, wa) + x⁻ ⊙ VJP(s, wb)."""
        ctx, node = self.ctx, self.node
        xp, xn = self.halves
        out = ctx.op("Mul", [xp, _vjp(ctx, node, s, wa)])
        return out if xn is None else ctx.op("Add", [out, ctx.op("Mul", [xn, _vjp(ctx, node, s, wb)])])


def _split(w, flip):
    """(W⁺, W⁻), swapped on the output channels (axis 0) where a folded BN scale was negative:
    there W' = s·W with s < 0, so s·W⁺ is W'⁻ and z⁺ on W' equals z⁺ on W scaled by s."""
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    if flip is None or not np.any(flip):
        return wp, wn
    swap = np.asarray(flip, bool).reshape((-1,) + (1,) * (w.ndim - 1))
    return np.where(swap, wn, wp), np.where(swap, wp, wn)


def linear_relevance(ctx, node, r, rule: Rule, bounds=None, conv_bias=None):
    """R_in of one linear node under `rule` (see module docstring). conv_bias (an intake
    bnfold.ConvBias, for bn_aware composites) gives the sign flips of a folded BN and, for
    bias="own", the conv's own bias."""
    x, w, b = _linear_parts(ctx, node)
    wp, wn = _split(w, None if conv_bias is None else conv_bias.flip)
    bp = None if b is None else np.maximum(b, 0)
    bn = None if b is None else np.minimum(b, 0)
    mul = lambda a, c: ctx.op("Mul", [a, c])  # noqa: E731
    add = lambda a, c: ctx.op("Add", [a, c])  # noqa: E731
    name = rule.name
    layer = _Layer(ctx, node, x, split=name in ("zplus", "alphabeta", "gamma"))
    if name in ("epsilon", "zero"):
        s = _divide(ctx, r, node.output[0], rule.epsilon if name == "epsilon" else 0.0)
        return mul(x, _vjp(ctx, node, s, node.input[1]))
    if name == "zplus":
        own = b if conv_bias is None else conv_bias.own
        b0, b1 = {"zennit": (bp, None), "none": (None, None), "both": (b, b), "own": (own, own)}[rule.bias]
        pos, neg = layer.weight("wp", wp), layer.weight("wn", wn)
        nonneg = _all(wp >= 0) and (layer.halves[1] is None or _all(wn <= 0)) and \
            all(v is None or _all(v >= 0) for v in (b0, b1))
        if nonneg and rule.epsilon and node.op_type == "Conv" and layer.halves[1] is None and b1 is None:
            # z + ε with ε inside the conv's bias: no separate pass over the layer's output
            shifted = (np.zeros(w.shape[0]) if b0 is None else b0) + rule.epsilon
            s = ctx.op("Div", [r, _forward(ctx, node, layer.halves[0], pos, shifted)], hint="lrp_s")
        else:
            s = _divide(ctx, r, layer.z(pos, neg, b0, b1), rule.epsilon, nonneg)
        return layer.relevance(s, pos, neg)
    if name == "alphabeta":
        pos, neg = layer.weight("wp", wp), layer.weight("wn", wn)
        sa = _divide(ctx, r, layer.z(pos, neg, bp), rule.epsilon,
                     _all(wp >= 0) and (layer.halves[1] is None or _all(wn <= 0)))
        sb = _divide(ctx, r, layer.z(neg, pos, bn), rule.epsilon)
        ra, rb = layer.relevance(sa, pos, neg), layer.relevance(sb, neg, pos)
        return ctx.op("Sub", [mul(ra, ctx.scalar(rule.alpha, x)), mul(rb, ctx.scalar(rule.beta, x))])
    if name == "gamma":
        g = rule.gamma
        up, dn = layer.weight("rho_p", w + g * wp), layer.weight("rho_n", w + g * wn)
        b0 = None if b is None else b + g * bp
        b2 = None if b is None else b + g * bn
        y = node.output[0]
        on = ctx.op("Cast", [ctx.op("Greater", [y, ctx.scalar(0, y)])], to=ctx.types.get(y, 1))
        off = ctx.op("Cast", [ctx.op("Less", [y, ctx.scalar(0, y)])], to=ctx.types.get(y, 1))
        s_up = mul(on, _divide(ctx, r, layer.z(up, dn, b0), rule.epsilon))
        s_dn = mul(off, _divide(ctx, r, layer.z(dn, up, b2), rule.epsilon))
        return add(layer.relevance(s_up, up, dn), layer.relevance(s_dn, dn, up))
    if name == "zbox":
        low, high = _box(ctx, node, x, rule, bounds)
        keep = rule.bias != "none"
        pos, neg = layer.weight("wp", wp), layer.weight("wn", wn)
        z = ctx.op("Sub", [ctx.op("Sub", [_forward(ctx, node, x, node.input[1], b if keep else None),
                                          _forward(ctx, node, low, pos, bp if keep else None)]),
                           _forward(ctx, node, high, neg, bn if keep else None)])
        s = _divide(ctx, r, z, rule.epsilon)
        return ctx.op("Sub", [ctx.op("Sub", [mul(x, _vjp(ctx, node, s, node.input[1])),
                                             mul(low, _vjp(ctx, node, s, pos))]),
                              mul(high, _vjp(ctx, node, s, neg))])
    if name in ("flat", "wsquare"):
        w_mod = layer.weight(name, np.ones_like(w) if name == "flat" else w ** 2)
        b_mod = None if (name == "flat" or b is None) else b ** 2
        z = _input_free_z(ctx, node, x, w_mod, b_mod)
        if z is None:
            z = _forward(ctx, node, _ones(ctx, x), w_mod, b_mod)
        s = _divide(ctx, r, z, rule.epsilon, nonneg=True)
        return _vjp(ctx, node, s, w_mod)
    ctx.fail(node, f"unknown LRP rule {name!r}")


def _all(mask) -> bool:
    return bool(np.all(mask))


def _input_free_z(ctx, node, x, w_name, b_mod):
    """The flat/w² rules' z = f(1; W', b'): it does not depend on the input, so it is computed once
    at build time for one image ([1, ...], broadcast over the batch by the Div); None when x's
    shape beyond the batch is not static, or x is not float32 (onnxruntime, which evaluates z, has
    float32 kernels for every linear op, not float64 ones)."""
    dims = ctx.shape(x)
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims[1:]) or ctx.dtype(x) != np.float32:
        return None
    ones = np.ones((1,) + tuple(dims[1:]), ctx.dtype(x))
    inputs = [ones, ctx.const(w_name)]
    if b_mod is not None and node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        inputs.append(np.asarray(b_mod, ctx.dtype(x)))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    z = ctx.evaluate(node.op_type, inputs, **attrs)
    if b_mod is not None and node.op_type == "MatMul":
        z = z + np.asarray(b_mod, z.dtype)
    return ctx.tensor(z, x, "lrp_z_const")


def _bias_shape(ctx, node):
    """Shape that broadcasts a bias over the node's output (channel axis 1, or last for dense)."""
    rank = len(ctx.shape(node.output[0])) or 2
    return (-1,) + (1,) * (rank - 2) if node.op_type in ("Conv", "ConvTranspose") else (-1,)


def _box(ctx, node, x, rule, bounds):
    """z^B bounds expanded to x's shape: per channel from the preprocessing, or x's own min/max."""
    shape = ctx.shape_of(x)
    if rule.bounds == "input":
        low = ctx.b.reduce("ReduceMin", x, [1, 2, 3])
        high = ctx.b.reduce("ReduceMax", x, [1, 2, 3])
    else:
        if bounds is None:
            ctx.fail(node, "z^B needs the input bounds (the model's preprocessing)")
        low, high = (ctx.tensor(np.asarray(v).reshape(1, -1, 1, 1), x, "box") for v in bounds)
    return ctx.op("Expand", [low, shape], hint="low"), ctx.op("Expand", [high, shape], hint="high")


def _z_rule(ctx, node, r, wants, composite: Composite):
    """Proportional split: R_i = x_i ⊙ VJP_i(R / z), z the op's output (recomputed on clamp(x, 0)
    for pooling when the composite says so, as Relevance-CAM does)."""
    z, eps = node.output[0], composite.norm_epsilon
    if composite.positive_pooling and node.op_type in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
        xp = _pos(ctx, node.input[0])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        z = ctx.op(node.op_type, [xp] + list(node.input[1:]), **attrs)
        g = GRADIENT_RULES[node.op_type](ctx, node, [_divide(ctx, r, z, eps)], wants)
        return [ctx.op("Mul", [xp, g[0]])] + [None] * (len(node.input) - 1)
    s = _divide(ctx, r, z, eps)
    grads = GRADIENT_RULES[node.op_type](ctx, node, [s], wants)
    return [ctx.op("Mul", [i, gi]) if gi is not None and w else None
            for i, gi, w in zip(node.input, grads, wants)]


def _mul(ctx, node, r, wants):
    """x ⊙ gate(x) (SiLU, HardSwish, squeeze-excite): the gate is computed from the signal, so the
    input produced earlier in the graph is the signal and takes all the relevance; a constant
    factor leaves relevance unchanged."""
    live = [i for i, w in enumerate(wants) if w]
    if len(live) == 1:
        signal = live[0]
    else:
        signal = min(live, key=lambda i: ctx.order.get(node.input[i], -1))
    return [r if i == signal else None for i in range(len(node.input))]


def relevance_rules(composite: Composite, first_linear: str | None, bounds=None,
                    conv_biases: dict | None = None) -> dict:
    """The rule table for one composite: op type -> rule(ctx, node, out_relevance, wants).
    conv_biases: the model's {conv output: bnfold.ConvBias}, read when the composite is bn_aware."""
    def linear(ctx, node, r, wants):
        rule = composite.rule_for(node, ctx.order.get(node.output[0], -1), node.output[0] == first_linear)
        origin = (conv_biases or {}).get(node.output[0]) if composite.bn_aware else None
        return [linear_relevance(ctx, node, r[0], rule, bounds, origin)] + [None] * (len(node.input) - 1)

    def passthrough(ctx, node, r, wants):
        return [r[0] if (w and k == 0) else None for k, w in enumerate(wants)]

    table = {op: linear for op in LINEAR_VJP}
    table.update({op: passthrough for op in PASS_THROUGH})
    table.update({op: GRADIENT_RULES[op] for op in MOVES_VALUES})
    table.update({op: (lambda ctx, node, r, wants: _z_rule(ctx, node, r[0], wants, composite))
                  for op in Z_RULE})
    table["Mul"] = lambda ctx, node, r, wants: _mul(ctx, node, r[0], wants)
    table["Cast"] = GRADIENT_RULES["Cast"]  # relevance passes unchanged, cast to the input's float type
    for op in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"):
        table[op] = _dynamic_int8
    table["Div"] = lambda ctx, node, r, wants: [r[0], None]
    if composite.attention:
        from .lrp_attention import attention_rules
        table.update(attention_rules(composite, table))
    return table


def _dynamic_int8(ctx, node, r, wants):
    ctx.fail(node, "LRP rules act on a whole linear layer, and dynamic INT8 splits each one into "
             "DynamicQuantizeLinear, an integer op and a rescaling Mul/Add; explain the FP32 or the "
             "static (QDQ) INT8 build with LRP, or use a gradient method (gradcam, ...) on this one")


def _composites() -> dict[str, Composite]:
    eps, zplus = Rule("epsilon"), Rule("zplus")
    dense = {"Gemm": eps, "MatMul": eps}
    return {
        "epsilon-plus-flat": Composite("epsilon-plus-flat", zplus, dense, first=Rule("flat")),
        "epsilon-gamma-box": Composite("epsilon-gamma-box", Rule("gamma"), dense, first=Rule("zbox")),
        "epsilon-alpha2-beta1": Composite("epsilon-alpha2-beta1", Rule("alphabeta"), dense),
        "epsilon": Composite("epsilon", eps),
        "zplus": Composite("zplus", zplus),
        # AttnLRP (Achtibat et al., ICML 2024): ε on every linear layer, the attention rules of
        # lrp_attention.py on Softmax, LayerNorm and the matmuls of two activations. ε = 1e-9: the
        # authors' lxt computes with ε -> 0 (plain gradients); Zennit's 1e-6 moved Σ R at ViT-Tiny's
        # block boundaries by up to 5e-4 of Σ|R| from lxt's, 1e-9 by 1e-6 (tests/test_attnlrp.py)
        "attnlrp": Composite("attnlrp", Rule("epsilon", epsilon=1e-9), attention=True, norm_epsilon=1e-9),
        # Relevance-CAM's code (see _relevance_cam): the conv's own bias in both z+ sums, a folded
        # BN's shift left out and its negative scales flipping W+/W- (what intake recorded)
        "relevance-cam": _relevance_cam("relevance-cam", "own", bn_aware=True),
        # every exported conv bias taken as the conv's own (raw in both sums): the authors' rule
        # applied to the exported conv as is, BN shift included
        "relevance-cam-bias": _relevance_cam("relevance-cam-bias", "both", bn_aware=False),
        # Salient Relevance (Li et al.): LRP-0 with bias on convs, z+ without bias on dense layers
        "sr": Composite("sr", Rule("zero"), {"Gemm": Rule("zplus", epsilon=1e-9, bias="none"),
                                             "MatMul": Rule("zplus", epsilon=1e-9, bias="none")},
                        norm_epsilon=1e-9),
    }


def _relevance_cam(name: str, conv_bias: str, bn_aware: bool) -> Composite:
    """The rules of the authors' code (mongeoroo/Relevance-CAM, modules/layers.py with alpha = 1,
    modules/resnet.py, modules/vgg.py):
    - Conv (not the first): z⁺ on x⁺ with W⁺ plus x⁻ with W⁻, the conv's own bias (if any) in
      both sums, s = R / z (0 where z = 0), R_in = x⁺·VJP(W⁺) + x⁻·VJP(W⁻);
    - first Conv (3 input channels): z^B with bounds the image's global min and max, no bias,
      +1e-9 on the denominator;
    - Linear: z⁺ as above without bias; BatchNorm2d, ReLU, Dropout: relevance unchanged (their
      BN divides x·w by x·w + 1e-9);
    - MaxPool2d: winner takes all; AvgPool2d and Add: z-rule on the inputs; AdaptiveAvgPool2d:
      z-rule on clamp(x, 0);
    - BasicBlock / Bottleneck: ReLU, then Add splits between the residual branch and the
      shortcut (downsample = conv1x1 + BN, same rules), the branch goes conv3 … conv1, and the
      block input gets the sum of both.
    Their stabilizer is 1e-9 only where z = 0; ours is ±1e-9 everywhere (no difference above
    float32 rounding for |z| ≫ 1e-9)."""
    dense = Rule("zplus", epsilon=1e-9, bias="none")
    return Composite(name, Rule("zplus", epsilon=1e-9, bias=conv_bias), {"Gemm": dense, "MatMul": dense},
                     first=Rule("zbox", epsilon=1e-9, bounds="input", bias="none"),
                     positive_pooling=True, norm_epsilon=1e-9, bn_aware=bn_aware)


COMPOSITES = _composites()
