"""Targets: graph pieces that turn a model's outputs into the score S that onnxcam explains.

A target appends nodes to the canonical model computing S [N, K'] from one of its outputs and
makes S the model's only output (`apply_target`, called by intake before it looks for the score).
From then on S is treated exactly as a classifier's logits: the seed picks one column of S (the
`target=` of explain, or the target's own default column `cls`), gradient methods differentiate
Σ seed ⊙ S, Score-CAM's masked forwards compute S, LRP and Relevance-CAM start at S, and the
exported explainer ends at S. Nothing after intake knows which task it explains.

Why columns: a segmentation S_k is class k's logits summed over a region, so one graph explains
every class (explain(target=k)); `Segment(cls=c)` only sets the column used when explain names
none. Tasks with one score (an embedding's similarity) have K' = 1.

Parameters (a segmentation mask, a reference embedding) are baked into the graph as constants,
not fed as graph inputs: the explainer, Score-CAM's masked graph and the exported explainer feed
only the image, unchanged. A new mask or reference is a new graph (`Explainer.with_target`); one
mask serves every image of a run.

Every op a target appends has a gradient rule (graph/rules); the ops that pick a region (ArgMax,
Equal, Cast of a bool) give integer/bool tensors, which the backward walk treats as constants, so
a predicted region acts as a fixed mask, as pytorch-grad-cam's SemanticSegmentationTarget does.

Detection fits the same shape (targets/detect.py): S [N, A] holds every pre-NMS candidate's class
score, and a detection is one column, found in numpy (targets/detections.py) from one forward.
"""
from __future__ import annotations

import onnx

from ..errors import OnnxCamError, describe
from ..graph.builder import GraphBuilder
from ..graph.expose import elem_types, prune, set_outputs
from ..intake.canonical import infer_shapes
from ..intake.catalog import LayerInfo, choose_auto, tensor_shapes

#: The name S gets when a target computes it with nodes of its own (not an existing output).
TARGET_SCORE = "onnxcam/target_score"


class Target:
    """Base of all targets. Subclasses set `output` (an output name, None: the model's first)
    and `cls` (the column of S explained when explain gives no target), and implement `score`."""
    output: str | None = None
    cls: int | None = None
    class_scores: bool = True   # S's columns are class scores that softmax/sigmoid make probabilities;
                                # False for a region sum, a similarity or a raw element
    pre_activation: bool = False  # score() takes logits=True/False: whether to sum the input of the
                                  # output's final Sigmoid/Softmax (intake's score="logits") or the output

    def score(self, b: GraphBuilder, name: str, shape: tuple) -> str:
        """Append nodes computing S [N, K'] from output `name` of `shape`; return S's name."""
        raise NotImplementedError

    def auto_layer(self, proto: onnx.ModelProto, layers: list[LayerInfo]) -> LayerInfo | None:
        """The layer explained by `layers="auto"` (classifiers: the tensor feeding the head's pool)."""
        return choose_auto(proto, layers)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v is not None and k[0] != "_")
        return f"{type(self).__name__}({fields})"


def coarsest_features(layers: list[LayerInfo], classes: int | None) -> LayerInfo | None:
    """Auto layer for dense outputs: the last layer at the network's coarsest resolution (smallest
    h·w) that is not a `classes`-channel score map, i.e. the last feature map before the head
    that upsamples. (The classifier rule, the tensor feeding a global pool, does not apply: the
    target's own sum or flatten over space would be taken for the pool.)"""
    candidates = [l for l in layers if l.preferred and l.channels != classes] or layers
    if not candidates:
        return None
    coarsest = min(l.height * l.width for l in candidates)
    return max((l for l in candidates if l.height * l.width == coarsest), key=lambda l: l.depth)


def check_class(cls, what: str = "cls") -> int | None:
    """None or a non-negative int (bools refused: True would silently mean class 1)."""
    if cls is None:
        return None
    if isinstance(cls, bool) or not hasattr(cls, "__index__") or int(cls) < 0:
        raise OnnxCamError(f"{what} must be a class index (int >= 0) or None, got {describe(cls)}")
    return int(cls)


def check_output_name(output) -> str | None:
    if output is not None and not isinstance(output, str):
        raise OnnxCamError(f"output must be an output name (str) or None, got {describe(output)}")
    return output


def _chosen_output(proto: onnx.ModelProto, wanted: str | None) -> str:
    names = [o.name for o in proto.graph.output]
    if wanted is None:
        return names[0]
    if wanted not in names:
        raise OnnxCamError(f"the model has no output {wanted!r}; its outputs: {', '.join(names)}")
    return wanted


def final_activation(proto: onnx.ModelProto, name: str) -> tuple[str, str] | None:
    """(input, op type) of the Sigmoid/Softmax/LogSoftmax that computes tensor `name` (through
    Identity/Cast only, so the input has the output's shape), or None. A target that sums a dense
    output (Segment) sums this input, the logits, when intake explains logits: a probability map
    saturates as a softmax classifier's probabilities do."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(name)
    while node is not None and node.op_type in ("Identity", "Cast"):
        node = producers.get(node.input[0])
    if node is not None and node.op_type in ("Sigmoid", "Softmax", "LogSoftmax"):
        return node.input[0], node.op_type
    return None


def apply_target(target: Target, proto: onnx.ModelProto, score: str = "logits") -> onnx.ModelProto:
    """Make S the canonical model's only output (edited in place, shapes inferred again).
    score: intake's choice ("logits" / "output"), passed on to targets with `pre_activation`.

    A model that already ends in TARGET_SCORE (an Explainer derived from a targeted one) is kept."""
    if not isinstance(target, Target):
        raise OnnxCamError(f"target must be an onnxcam.targets object (Classify, Segment, MultiLabel, "
                           f"Output, Embed, Detect), got {describe(target)}")
    if [o.name for o in proto.graph.output] == [TARGET_SCORE]:
        return proto
    name = _chosen_output(proto, target.output)
    shape = tensor_shapes(proto).get(name)
    if shape is None:
        raise OnnxCamError(f"the shape of output {name!r} is unknown after shape inference; "
                           "export the model with static output shapes")
    b = GraphBuilder(proto)
    if elem_types(proto).get(name, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT:
        name = b.op("Cast", [name], hint="target_float", to=onnx.TensorProto.FLOAT)
    s = (target.score(b, name, shape, logits=score == "logits") if target.pre_activation
         else target.score(b, name, shape))
    b.append_to(proto.graph)
    if s not in (o.name for o in proto.graph.output):
        for node in proto.graph.node:  # give S its fixed name
            node.output[:] = [TARGET_SCORE if o == s else o for o in node.output]
        s = TARGET_SCORE
    set_outputs(proto, [s])
    prune(proto.graph)
    return infer_shapes(proto)


def static_dims(shape: tuple, what: str) -> tuple[int, ...]:
    """The non-batch dims of an output shape, refused when one is not a known positive int."""
    dims = tuple(shape[1:])
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise OnnxCamError(f"{what} has dynamic dims {tuple(shape)}; export it with static sizes "
                           "(or give the image size with --size)")
    return dims
