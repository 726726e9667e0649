"""The backward engine: reverse-mode gradients appended to an ONNX graph as standard ops.

Given requested tensors and the explained score, we add an input `seed` [N, K] (or an in-graph
one-hot of the top-1 class), treat S = Σ seed ⊙ scores, and walk the graph backwards from the
score to the requested tensors only: nodes that do not depend on a requested tensor, and weight
gradients, are never built. Each op's vector-Jacobian product comes from one rule in a registry
(`rules/`); a rule set can override single ops (guided backprop swaps the ReLU rule, LRP swaps the
linear ops). One onnxruntime run returns scores, activations and gradients for every layer.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import onnx

from ..errors import OnnxCamError
from ..intake.catalog import FLOAT_TYPES, tensor_shapes
from .builder import GraphBuilder
from .context import RuleContext
from .expose import SCORES, add_scores, as_float, elem_types, prune, set_outputs
from .kinks import append_near_kinks, gates
from .rules import RULES

SEED = "onnxcam/seed"
# QOperator-format ops compute from integers to integers with fused requantization: no rule yet
# (dynamic INT8's DynamicQuantizeLinear/ConvInteger/MatMulInteger have straight-through rules).
INTEGER_ONLY = {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
                "QLinearConcat", "QLinearAveragePool", "QLinearLeakyRelu", "QLinearSigmoid"}
# Integer outputs that carry a straight-through cotangent (rules/quantization.py).
_CARRIES = {"QuantizeLinear", "ConvInteger", "MatMulInteger"}


def _live_tensors(model: onnx.ModelProto, sources: list[str], types: dict) -> set[str]:
    """Float tensors that depend on any source. Integer outputs (Shape, ArgMax, ...) carry no
    gradient, except those of quantized ops, which the straight-through rules pass on. Of
    DynamicQuantizeLinear only the quantized tensor is live: its run-time scale and zero point
    are constants to the straight-through estimator."""
    live = set(sources)
    for node in model.graph.node:
        if any(i in live for i in node.input):
            if node.op_type == "DynamicQuantizeLinear":
                live.add(node.output[0])
                continue
            carries = node.op_type in _CARRIES
            live.update(o for o in node.output
                        if carries or types.get(o, onnx.TensorProto.FLOAT) in FLOAT_TYPES)
    return live


def _path(model: onnx.ModelProto, score: str, live: set[str]) -> list[onnx.NodeProto]:
    """Nodes between the sources and the score, in reverse topological order."""
    needed, path = {score}, []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output) and any(i in live for i in node.input):
            path.append(node)
            needed.update(i for i in node.input if i in live)
    return path


def append_backward(model: onnx.ModelProto, score: str, seed: str, sources: list[str],
                    rules: dict | None = None, layer_label: str = "") -> dict[str, str]:
    """Append dS/d(source) for each source to `model` (edited in place); S = Σ seed ⊙ score.

    Returns {source: gradient tensor name}. Raises OnnxCamError naming the op and node where no
    rule exists, or a source the score does not depend on.
    """
    rules = RULES if rules is None else rules
    label = ", ".join(sources[:2]) + (f" and {len(sources) - 2} more" if len(sources) > 2 else "")
    ctx = RuleContext(model, layer_label or label)
    live = _live_tensors(model, sources, ctx.types)
    for s in sources:
        if score not in _live_tensors(model, [s], ctx.types):
            raise OnnxCamError(f"the explained score does not depend on tensor {s!r}; choose a layer "
                               "between the input and the classifier output")
    cot: dict[str, list[str]] = defaultdict(list)
    seed_cast = seed if ctx.dtype(score) == np.float32 else ctx.op("Cast", [seed], to=ctx.types[score])
    cot[score].append(ctx.reshape_like(seed_cast, score))

    def total(name: str) -> str | None:
        parts = cot.get(name)
        if not parts:
            return None
        if len(parts) > 1:
            cot[name] = [ctx.op("Sum", parts, hint="grad_sum")]
        return cot[name][0]

    path = _path(model, score, live)
    integer = next((n for n in reversed(path) if n.op_type in INTEGER_ONLY), None)
    if integer is not None:
        raise OnnxCamError(f"the path from layer {ctx.layer!r} to the score runs through integer-only "
                           f"{integer.op_type} node {integer.name!r} (QOperator-format quantization), "
                           "which has no gradient rule; use scorecam or eigencam, or quantize in QDQ "
                           "format (quantize_static(..., quant_format=QuantFormat.QDQ))")
    for node in path:
        outs = [total(o) for o in node.output]
        if all(g is None for g in outs):
            continue
        rule = rules.get(node.op_type)
        if rule is None:
            raise OnnxCamError(f"no gradient rule for op {node.op_type} (node {node.name!r}) on the path "
                               f"from layer {ctx.layer!r} to the score; choose a later layer or use "
                               "a gradient-free method (scorecam, eigencam)")
        wants = [bool(i) and i in live for i in node.input]
        grads = rule(ctx, node, outs, wants)
        for name, g, w in zip(node.input, grads, wants):
            if w and g is not None:
                cot[name].append(g)
    result = {}
    for s in sources:
        g = total(s)
        result[s] = g if g is not None else ctx.zeros_like(s)
    ctx.b.append_to(model.graph)
    return result


def _start(model: onnx.ModelProto, seed: str, start: str) -> str:
    if start == "seed":
        return seed
    b = GraphBuilder(model)
    if start == "logit":
        out = b.op("Mul", [seed, SCORES], hint="start_logit")
    elif start == "contrastive":
        k = b.op("Cast", [b.op("Shape", [SCORES], hint="k")], to=onnx.TensorProto.FLOAT)
        k = b.op("Slice", [k, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))])
        inv = b.op("Reciprocal", [k])
        out = b.op("Sub", [b.op("Mul", [seed, b.op("Add", [b.const(np.float32(1.0)), inv])]), inv],
                   hint="start_contrastive")
    else:
        raise OnnxCamError(f"start must be 'seed', 'logit' or 'contrastive', got {start!r}")
    b.append_to(model.graph)
    return out


def _gates_per_layer(model: onnx.ModelProto, score: str, layers: list[str]) -> dict[str, list]:
    """{layer: gate nodes (kinks.GATES) between the layer and the score}."""
    types, shapes = elem_types(model), tensor_shapes(model)
    return {layer: gates(_path(model, score, _live_tensors(model, [layer], types)), shapes,
                         (shapes.get(layer) or ("?",))[0]) for layer in layers}


def gradient_graph(proto: onnx.ModelProto, score_name: str, layers: list[str], top1: bool,
                   rules: dict | None = None, start: str = "seed",
                   kinks: bool = False) -> tuple[onnx.ModelProto, dict]:
    """Forward + backward graph returning scores, each layer's activation and gradient (float32).

    top1: the seed is the one-hot of each image's argmax, computed in the graph (one run);
    otherwise the caller feeds `onnxcam/seed` [N, K]. start: "seed" uses the seed as is, "logit"
    multiplies it by the scores (LRP's usual start), "contrastive" turns a one-hot seed into
    1 at the target and -1/K elsewhere (Relevance-CAM). kinks: also output, per layer, the count
    per image of gate units on its path within rounding of their threshold (kinks.output_name).
    """
    model = copy.deepcopy(proto)
    b = GraphBuilder(model)
    add_scores(b, score_name)
    if top1:
        k = b.op("Shape", [SCORES], hint="k")
        depth = b.op("Slice", [k, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))])
        arg = b.op("ArgMax", [SCORES], hint="top1", axis=1, keepdims=0)
        b.op("OneHot", [arg, depth, b.const(np.array([0.0, 1.0], np.float32), "onehot_values")],
             outputs=[SEED], axis=-1)
    b.append_to(model.graph)
    if not top1:
        model.graph.input.append(onnx.helper.make_tensor_value_info(SEED, onnx.TensorProto.FLOAT, ["N", "K"]))
    seed = _start(model, SEED, start)
    on_path = _gates_per_layer(model, score_name, layers) if kinks else {}
    grads = append_backward(model, score_name, seed, layers, rules)
    types = elem_types(model)
    tail = GraphBuilder(model)
    carried = {}
    for layer in layers:
        typed = types | {grads[layer]: types.get(layer, onnx.TensorProto.FLOAT)}
        carried[layer] = (as_float(tail, layer, types), as_float(tail, grads[layer], typed))
    tail.append_to(model.graph)
    names = [SCORES] + [n for pair in carried.values() for n in pair]
    names += append_near_kinks(model, on_path, types).values()
    set_outputs(model, list(dict.fromkeys(names)))
    prune(model.graph)
    return model, carried
