"""`Model`: a loaded, canonicalized ONNX classifier plus what the explainers need to know about it."""
from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import OnnxCamError, describe
from . import bnfold, canonical, tokens
from .catalog import NCHW, NHWC, LayerInfo, build_catalog, choose_auto, input_layout, tensor_shapes
from .batching import batching_problem
from .loading import load_model
from ..targets.base import apply_target

# Final activations whose input is the score we explain by default (probabilities saturate).
_SCORE_ACTIVATIONS = {"Softmax", "LogSoftmax", "Sigmoid"}
_PASS_THROUGH = {"Identity", "Flatten", "Reshape", "Squeeze", "Cast", "QuantizeLinear", "DequantizeLinear"}


@dataclass
class Model:
    """A canonical model: protobuf, image input, score tensor and layer catalog."""
    proto: onnx.ModelProto
    input_name: str
    layout: str                      # NCHW or NHWC
    image_shape: tuple[int, int, int]  # (C, H, W) regardless of layout
    output_name: str                 # the classifier output as exported
    score_name: str                  # the tensor explained (pre-softmax by default)
    final_activation: str | None     # Softmax / Sigmoid / ... that was skipped, if any
    num_classes: int
    layers: list[LayerInfo]
    auto_layer: LayerInfo | None
    batchable: bool = True
    batch_problem: str | None = None  # why the model runs one image at a time, when it must
    notes: list[str] = field(default_factory=list)
    first_linear: str | None = None  # output of the first Conv/Gemm/MatMul after the image (LRP)
    output_activation: str | None = None  # Softmax / Sigmoid that ends the graph, even when explained
    attention: bool | None = None  # attention in the graph (AttnLRP's test), found on first use
    conv_biases: dict = field(default_factory=dict)  # conv output -> bnfold.ConvBias (Relevance-CAM)
    default_target: int | None = None  # the column of the score explained when none is given (targets' cls)
    class_scores: bool = True          # the score's columns are classes with probabilities (targets' class_scores)

    def layer(self, name: str) -> LayerInfo:
        """Resolve a layer name (or 'auto'); unknown names list the close matches."""
        if name == "auto":
            if self.auto_layer is None:
                if any(n.op_type.startswith("QLinear") for n in self.proto.graph.node):
                    raise OnnxCamError("this model's feature maps are all integer (QOperator-format "
                                       "quantization: QLinearConv ...); quantize in QDQ format "
                                       "(quantize_static(..., quant_format=QuantFormat.QDQ)) or explain "
                                       "the FP32 model")
                raise OnnxCamError("this model has no 4-D feature tensor with spatial extent to explain")
            return self.auto_layer
        for layer in self.layers:
            if layer.name == name:
                return layer
        close = difflib.get_close_matches(name, [layer.name for layer in self.layers], n=5, cutoff=0.4)
        hint = f"close matches: {', '.join(close)}" if close else "run `onnxcam layers MODEL` to list them"
        raise OnnxCamError(f"unknown layer {name!r}; {hint}")

    def resolve_layers(self, layers) -> list[LayerInfo]:
        """Layers from "auto", "all", a name, a LayerInfo, or a non-empty list of names/LayerInfos."""
        if layers is None or isinstance(layers, (str, LayerInfo)):
            names = [layers or "auto"]
        elif isinstance(layers, (list, tuple)):
            names = list(layers)
        else:
            raise OnnxCamError(f"layers must be 'auto', 'all', a layer name or a list of names, "
                               f"got {type(layers).__name__}")
        if not names:
            raise OnnxCamError("layers is empty: give 'auto', 'all' or at least one layer name")
        if names == ["all"]:
            return [layer for layer in self.layers if layer.preferred]
        resolved = []
        for n in names:
            name = n.name if isinstance(n, LayerInfo) else n
            if not isinstance(name, str):
                raise OnnxCamError(f"layer names must be strings, got {describe(name)}")
            layer = self.layer(name)
            if layer not in resolved:
                resolved.append(layer)
        return resolved

    def seed_for(self, target, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(class per image, seed [N, K]) for a gradient run. None -> (None, None): the graph
        takes each image's top-1. Ints -> one-hot seeds. A float vector [K] or [N, K] -> weights
        over classes (S = Σ_k w_k y_k), reported target = its largest weight."""
        if target is None:
            target = self.default_target
        if target is None:
            return None, None
        arr = _target_array(target)
        if arr.dtype.kind == "f":
            w = np.broadcast_to(arr, (n, self.num_classes)) if arr.shape in ((self.num_classes,),
                                                                              (n, self.num_classes)) else None
            if w is None:
                raise OnnxCamError(f"a weight target must have shape [{self.num_classes}] or "
                                   f"[{n}, {self.num_classes}], got {arr.shape}")
            if not np.all(np.isfinite(w)):
                raise OnnxCamError("weight target contains NaN or infinite values")
            return w.argmax(axis=1), np.ascontiguousarray(w, np.float32)
        idx = self.check_targets(arr, n)
        seed = np.zeros((n, self.num_classes), np.float32)
        seed[np.arange(n), idx] = 1.0
        return idx, seed

    def check_targets(self, target, n: int) -> np.ndarray | None:
        """Validate targets: None (top-1, or the target object's default), an int, or one int per image."""
        if target is None:
            target = self.default_target
        if target is None:
            return None
        arr = np.atleast_1d(_target_array(target))
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise OnnxCamError(f"target must be a class index (int) or one per image, got {describe(target)}")
        if arr.size == 1:
            arr = np.repeat(arr, n)
        if arr.size != n:
            raise OnnxCamError(f"got {arr.size} targets for {n} images: give one target or one per image")
        bad = arr[(arr < 0) | (arr >= self.num_classes)]
        if bad.size:
            raise OnnxCamError(f"target {int(bad[0])} is out of range: this model has {self.num_classes} "
                               f"classes (0..{self.num_classes - 1})")
        return arr.astype(np.int64)


def _target_array(target) -> np.ndarray:
    """A target as a numeric array; bools, strings, complex and ragged lists are refused (True
    would silently mean class 1)."""
    try:
        arr = np.asarray(target)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf":
        raise OnnxCamError(f"target must be a class index (int), one per image, or class weights, "
                           f"got {describe(target)}")
    return arr



def _static(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _find_image_input(model: onnx.ModelProto, image_size=None) -> tuple[str, str, tuple[int, int, int]]:
    """The image input, its layout and (C, H, W). Dynamic H, W are fixed to image_size (written
    into the graph so shapes infer statically), or refused when no size is known.

    The layout is read from how the graph uses the input (input_layout): the input's channel axis
    is the one that reaches the first convolution's channel axis. Guessing from C in (1, 3, 4)
    is only the fallback for graphs without such a path: it fails for multispectral inputs and
    for small images whose H or W is itself 1, 3 or 4."""
    for vi in canonical.graph_inputs(model):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4 or vi.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT,
                                                                   onnx.TensorProto.FLOAT16):
            continue
        vals = [_static(d) for d in dims]
        found = input_layout(model, vi.name, vals)
        if found is not None:
            layout, c = found
        elif vals[1] in (1, 3, 4):
            layout, c = NCHW, vals[1]
        elif vals[3] in (1, 3, 4):
            layout, c = NHWC, vals[3]
        else:
            continue
        spatial = (2, 3) if layout == NCHW else (1, 2)
        hw = tuple(vals[i] for i in spatial)
        if None in hw:
            if image_size is None:
                raise OnnxCamError(f"input {vi.name!r} has a dynamic height/width: give the image size "
                                   "(--size H W, a sidecar JSON next to the model, or preprocess=...)")
            hw = tuple(int(v) for v in image_size)
            for i, v in zip(spatial, hw):
                dims[i].Clear()
                dims[i].dim_value = v
        elif image_size is not None and tuple(image_size) != hw:
            raise OnnxCamError(f"the model takes {hw[0]}x{hw[1]} images but preprocessing asks for "
                               f"{image_size[0]}x{image_size[1]}; fix the size")
        return vi.name, layout, (c, hw[0], hw[1])
    raise OnnxCamError("no image-like input: expected a float input of shape [N,C,H,W] or [N,H,W,C] "
                       "that feeds a convolution (or has C in 1, 3, 4); onnxcam explains image classifiers")


def _decomposed_softmax(node, producers) -> str | None:
    """x when `node` computes Exp(x - ReduceMax(x)) / ReduceSum(Exp(...)): onnxruntime writes
    Softmax that way where it has no kernel for the type (FP16 builds on CPU)."""
    if node.op_type != "Div":
        return None
    exp, total = producers.get(node.input[0]), producers.get(node.input[1])
    if exp is None or exp.op_type != "Exp" or total is None or total.op_type != "ReduceSum" \
            or total.input[0] != exp.output[0]:
        return None
    sub = producers.get(exp.input[0])
    if sub is not None and sub.op_type == "Sub":
        peak = producers.get(sub.input[1])
        if peak is not None and peak.op_type == "ReduceMax" and peak.input[0] == sub.input[0]:
            return sub.input[0]
    return exp.input[0]


def _find_score(model: onnx.ModelProto) -> tuple[str, str, str | None, int]:
    shapes = tensor_shapes(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        shape = shapes.get(out.name, ())
        if len(shape) < 2 or not isinstance(shape[-1], int) or any(
                not isinstance(d, int) or d != 1 for d in shape[1:-1]):
            continue
        node = producers.get(out.name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producers.get(node.input[0])
        if node is not None and node.op_type in _SCORE_ACTIVATIONS:
            return out.name, node.input[0], node.op_type, int(shape[-1])
        logits = _decomposed_softmax(node, producers) if node is not None else None
        if logits is not None:
            return out.name, logits, "Softmax", int(shape[-1])
        return out.name, out.name, None, int(shape[-1])
    shapes_seen = ", ".join(f"{o.name} {list(shapes.get(o.name, ()))}" for o in model.graph.output)
    raise OnnxCamError(f"no classifier output [N, K] (outputs: {shapes_seen}); for other heads give a target: "
                       "target=onnxcam.targets.Segment/Embed/Output/Detect(...) or --task segment|embed|output|detect")


def load(source, score: str = "logits", image_size=None, target=None) -> Model:
    """Intake pipeline (DESIGN §3): load safely, upgrade, batch, canonicalize, find input/score/layers.

    score: "logits" explains the pre-softmax score when the graph ends in Softmax/Sigmoid;
    "output" explains the exported output as is. image_size (H, W) fixes a dynamic input size.
    target: an onnxcam.targets object; it rewrites the canonical model so that its only output is
    the score it defines (targets/base.py), found below as a classifier's would be.
    """
    if score not in ("logits", "output"):
        raise OnnxCamError(f"score must be 'logits' or 'output', got {score!r}")
    proto = load_model(source)
    notes = []
    old = canonical.default_opset(proto)
    proto = canonical.upgrade_opset(proto)
    if old < canonical.TARGET_OPSET:
        notes.append(f"upgraded opset {old} -> {canonical.TARGET_OPSET}")
    canonical.drop_value_info(proto)
    static = canonical.make_batch_symbolic(proto)
    name, _, _ = _find_image_input(proto, image_size)  # fails early, fixes dynamic H, W before folding
    if canonical.float32_input(proto, name):
        notes.append("the model takes float16 images: fed float32 through a Cast")
    patched = canonical.patch_batch_constants(proto, static)
    if patched:
        notes.append(f"patched {patched} Reshape(s) that hard-coded batch {static}")
    nodes_before = len(proto.graph.node)
    bn_before = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
    bn_folds = bnfold.record_bn_folds(proto)
    with tempfile.TemporaryDirectory(prefix="onnxcam_") as tmp:
        src = canonical.spill(proto, tmp)
        del proto  # a large model must not be held twice while onnxruntime reads it
        proto = canonical.canonicalize(src)
        notes.append(f"canonicalized {nodes_before} -> {len(proto.graph.node)} nodes")
        bn_after = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
        if bn_before > bn_after:
            notes.append(f"folded {bn_before - bn_after} BatchNormalization into the preceding Conv "
                         "(LRP sees the merged layers)")
        input_name, layout, image_shape = _find_image_input(proto, image_size)
        if target is not None:
            proto = apply_target(target, proto, score)
            notes.append(f"explaining {target!r}")
        output_name, score_name, act, k = _find_score(proto)
        default = _default_target(target, k)
        output_activation = act
        if score == "output" or act is None:
            score_name, act = output_name, None
        else:
            notes.append(f"explaining the input of the final {act} (pre-activation score)")
        layers = tokens.add_token_layers(proto, input_name, image_shape[1:],
                                         build_catalog(proto, input_name, layout))
        conv_biases = bnfold.conv_biases(proto, bn_folds)
        notes.extend(filter(None, [bnfold.note(conv_biases)]))
        c, h, w = image_shape
        problem = batching_problem(proto, input_name, [c, h, w] if layout == NCHW else [h, w, c],
                                   runnable=canonical.canonical_file(src))
        batchable = problem is None
        if problem:
            notes.append(f"{problem}: explaining image by image")
    return Model(proto, input_name, layout, image_shape, output_name, score_name, act, k,
                 layers, target.auto_layer(proto, layers) if target is not None else
                 tokens.choose_token_auto(proto, layers, choose_auto(proto, layers)),
                 batchable=batchable, batch_problem=problem, notes=notes,
                 first_linear=_first_linear(proto, input_name), output_activation=output_activation,
                 conv_biases=conv_biases, default_target=default,
                 class_scores=target is None or target.class_scores)


def _default_target(target, k: int) -> int | None:
    """The target object's class (range-checked against the score's K columns), or None."""
    cls = getattr(target, "cls", None)
    if cls is not None and cls >= k:
        raise OnnxCamError(f"class {cls} is out of range: the explained score has {k} classes (0..{k - 1})")
    return cls


def _first_linear(proto: onnx.ModelProto, input_name: str) -> str | None:
    live = {input_name}
    for node in proto.graph.node:
        if any(i in live for i in node.input):
            if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
                return node.output[0]
            live.update(node.output)
    return None
