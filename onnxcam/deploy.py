"""A deployable explainer: one standalone ONNX model that returns the logits and the heatmap.

The explain graph the engine already builds (forward + backward to one layer, or the Relevance-CAM
relevance graph) gets the method's last steps appended as standard ops: channel weights, weighted
sum, ReLU, min-max, bilinear resize to the input size (half-pixel, as cv2.INTER_LINEAR) and min-max
again, in the method's own normalization order (postprocess.py). The result runs wherever the model
runs: onnxruntime on servers, mobile or web, with no Python. Its heatmap equals `Explainer.explain`
(tested to 1e-5); the numpy forms of the same formulas live in methods/.

Outputs: `logits` [N, K] (the explained score), `heatmap` [N, H, W] in [0, 1], `class` [N] (the
explained class). The explained class is each image's top-1, or, with target="input", an int64
input `target_class` [N] with values in [0, K) (ONNX OneHot: outside that range the seed is zero
and so is the heatmap). A model that intake runs image by image (dynamic INT8: its activation
ranges span the batch) is exported with a batch of 1.

Other tasks: an Explainer with a target object (Segment, Embed, MultiLabel, Output; or `task=`
here) has S [N, K'] as its score, so the exported graph ends at S: `logits` is S (a segmenter's
per-class region sums, an embedding's similarity), `class` and `target_class` index its columns
(Segment: the class whose region is explained), and the heatmap is Explainer.explain's for that
column. The target's constants (mask, reference embedding) are baked into the exported graph.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .errors import OnnxCamError, first_line
from .graph.backward import SEED, gradient_graph
from .graph.builder import GraphBuilder
from .graph.expose import SCORES, prune, set_outputs
from .postprocess import EPS

EXPORTABLE = {"gradcam": "relu_minmax_resize", "hirescam": "relu_minmax_resize",
              "relevancecam": "minmax_resize"}
TARGET_INPUT = "target_class"
OUTPUTS = ("logits", "heatmap", "class")


def _free_names(model: onnx.ModelProto, names) -> dict[str, str]:
    """Rename tensors of the model that carry one of our input/output names (many models call
    their output `logits`): names must be unique in a graph. Returns {old: new}."""
    taken = set(names)
    graph = model.graph
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in taken:
                node.input[k] = f"{name}/model"
        for k, name in enumerate(node.output):
            if name in taken:
                node.output[k] = f"{name}/model"
    for vi in list(graph.output) + list(graph.value_info) + list(graph.input):
        if vi.name in taken:
            vi.name = f"{vi.name}/model"
    for t in graph.initializer:
        if t.name in taken:
            t.name = f"{t.name}/model"
    return {name: f"{name}/model" for name in taken}


def _head(b: GraphBuilder, method: str, acts: str, grads: str, size: tuple[int, int]) -> str:
    """Raw map [N, 1, h, w] from activations and gradients (or relevances), then normalized."""
    if method == "hirescam":
        raw = b.reduce("ReduceSum", b.op("Mul", [grads, acts]), [1], keepdims=1, hint="hirescam")
    else:  # gradcam and relevancecam: w_k = spatial mean of dS/dA_k (or of R_k)
        weights = b.reduce("ReduceMean", grads, [2, 3], keepdims=1, hint="channel_weights")
        raw = b.reduce("ReduceSum", b.op("Mul", [weights, acts]), [1], keepdims=1, hint="cam")
    if EXPORTABLE[method] == "relu_minmax_resize":
        raw = b.op("Relu", [raw])
    return b.minmax(b.resize_to(b.minmax(raw, EPS), size), EPS, hint="heatmap_nchw")


def _class_input(model: onnx.ModelProto, num_classes: int) -> None:
    """Replace the float seed input [N, K] by an int64 class input [N] and an in-graph one-hot."""
    seeds = [i for i in model.graph.input if i.name == SEED]
    for vi in seeds:
        model.graph.input.remove(vi)
    model.graph.input.append(helper.make_tensor_value_info(TARGET_INPUT, onnx.TensorProto.INT64, ["N"]))
    b = GraphBuilder(model)
    b.op("OneHot", [TARGET_INPUT, b.const(np.array([num_classes], np.int64), "depth"),
                    b.const(np.array([0.0, 1.0], np.float32), "onehot_values")], outputs=[SEED], axis=-1)
    b.prepend_to(model.graph)


def build_explainer_model(ex, method: str = "gradcam", layer="auto", target: str = "top1",
                          task=None) -> onnx.ModelProto:
    """The standalone explainer for an Explainer `ex` (see the module docstring); `task`: an
    onnxcam.targets object to explain instead of ex's own target (ex.with_target(task))."""
    if task is not None:
        ex = ex.with_target(task)
    if method not in EXPORTABLE:
        raise OnnxCamError(f"export-explainer supports {', '.join(EXPORTABLE)}, not {method!r}")
    if target not in ("top1", "input"):
        raise OnnxCamError(f"target must be 'top1' or 'input', got {target!r}")
    m = ex.model
    chosen = m.layer(getattr(layer, "name", layer))
    reserved = OUTPUTS + (TARGET_INPUT,)
    if m.input_name in reserved:
        raise OnnxCamError(f"the model's image input is named {m.input_name!r}, a name the explainer "
                           f"gives to one of its own inputs/outputs ({', '.join(reserved)}); rename it")
    proto = copy.deepcopy(m.proto)
    renamed = _free_names(proto, reserved)
    layer_name, score = renamed.get(chosen.name, chosen.name), renamed.get(m.score_name, m.score_name)
    top1 = target == "top1"
    if method == "relevancecam":
        from .graph.rules.lrp import COMPOSITES, relevance_rules
        from .graph.rules.lrp_attention import default_composite
        rules = relevance_rules(COMPOSITES[default_composite(m, "relevance-cam")],
                                renamed.get(m.first_linear, m.first_linear),
                                ex.box_bounds(), {renamed.get(k, k): v for k, v in m.conv_biases.items()})
        graph, carried = gradient_graph(proto, score, [layer_name], top1, rules, "contrastive")
    else:
        graph, carried = gradient_graph(proto, score, [layer_name], top1)
    if not top1:
        _class_input(graph, m.num_classes)
    acts, grads = carried[layer_name]
    b = GraphBuilder(graph)
    if chosen.layout == "NHWC":
        acts, grads = (b.op("Transpose", [t], perm=[0, 3, 1, 2]) for t in (acts, grads))
    heat = _head(b, method, acts, grads, m.image_shape[1:])
    b.op("Squeeze", [heat, b.const(np.array([1], np.int64), "axis")], outputs=["heatmap"])
    b.op("Identity", [SCORES], outputs=["logits"])
    b.op("ArgMax", [SEED], outputs=["class"], axis=1, keepdims=0)
    b.append_to(graph.graph)
    set_outputs(graph, list(OUTPUTS))
    batch = "N" if m.batchable else 1
    _type_outputs(graph, m.num_classes, m.image_shape[1:], batch)
    if not m.batchable:
        _fix_batch(graph, 1)
    prune(graph.graph)
    graph.graph.name = f"onnxcam_{method}"
    graph.doc_string = (f"onnxcam {method} explainer at layer {chosen.name}: outputs logits [N, K], "
                        f"heatmap [N, H, W] in [0, 1], class [N] ({'top-1' if top1 else 'input target_class'})"
                        + ("" if m.batchable else f"; batch fixed to 1: {m.batch_problem}"))
    del graph.graph.value_info[:]
    _check(graph)
    return graph


def _type_outputs(model: onnx.ModelProto, k: int, size, batch) -> None:
    del model.graph.output[:]
    model.graph.output.extend([
        helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [batch, k]),
        helper.make_tensor_value_info("heatmap", onnx.TensorProto.FLOAT, [batch, *size]),
        helper.make_tensor_value_info("class", onnx.TensorProto.INT64, [batch])])


def _fix_batch(model: onnx.ModelProto, n: int) -> None:
    """A model whose images interact within a batch (dynamic quantization) is exported for one
    image per run, so the explainer cannot silently give batch-dependent heatmaps."""
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param"):
            dims[0].Clear()
            dims[0].dim_value = n


def _check(model: onnx.ModelProto) -> None:
    """Full checker (strict shape inference) and standard ops only: what any runtime accepts."""
    custom = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise OnnxCamError(f"the explainer would need non-standard ops {', '.join(custom)}; "
                           "explain a model exported with standard ONNX ops")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - report the checker's finding as one line
        raise OnnxCamError(f"the exported explainer fails onnx.checker: {first_line(exc)}") from None


def export_explainer(ex, path, method: str = "gradcam", layer="auto", target: str = "top1",
                     overwrite: bool = False, task=None) -> Path:
    """Write the standalone explainer to `path` (never over an existing file unless overwrite)."""
    from .output import check_targets, write_bytes

    path = Path(path)
    check_targets([path], overwrite)
    model = build_explainer_model(ex, method, layer, target, task)
    write_bytes(path, model.SerializeToString())
    return path
