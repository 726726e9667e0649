"""Detect: explain one detection of a YOLO-style detector. S [N, A] holds, for every pre-NMS
candidate a, its class score; a detection is one column (the candidate it came from).

Why columns of candidates: the engine explains one column of S per image, so explaining detection
k of image i is explain(target=[candidate]) on ONE graph, and every method (gradients, Score-CAM,
LRP, Relevance-CAM, the exported explainer) works unchanged. Which candidate a detection came from
is found in numpy (targets/detections.py: decode, NMS, IoU matching) from one forward of the head.

The head. ultralytics YOLOv8/YOLO11 exports end in Concat(boxes [N, 4, A], Sigmoid(logits
[N, K, A])) -> [N, 4+K, A]; `find_head` finds that Concat anywhere upstream of the output, so an
export with NMS/TopK baked in (whose output is the kept indices or boxes) is explained at the
tensor before it; Reshape/Cast/Q/DQ between the Sigmoid and the Concat (FP16, INT8 QDQ builds)
are looked through. S_a = Sigmoid(logit of class `cls` at a), or, with cls=None, Sigmoid(logit of
a's own best class) (a one-hot mask of its argmax, constant to the gradient, as Segment's predicted
region). The Sigmoid is appended as the last node so intake treats S as it
treats a multi-label head: score="logits" (default) explains the pre-sigmoid logit, as
pytorch-grad-cam's YOLO examples and ultralytics' training loss see it; score="output" the
probability. YOLOv5's [N, A, 5+K] output (objectness x class, sigmoids applied inside) has no
single logit: S_a = objectness_a x p_c(a) as exported.

No box-regression term (decided): S is the class score alone, the quantity that decides whether a
candidate becomes a detection and with which class. pytorch-grad-cam's FasterRCNNBoxScoreTarget
adds the IoU of the predicted box with a reference box; here the box comes from a separate branch
(DFL over 4 x 16 bins) and such a term would mix that branch's evidence into the class map. It can
be added later as an option without changing the column design.

Auto layer: the finest neck output feeding the head (P3, stride 8). In YOLOv8/11's PAN neck it
is upstream of all three scales' head inputs, so every candidate has a gradient there, at the
highest resolution. `Detect.neck` names the three (P3, P4, P5) for `layers=`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import OnnxCamError
from ..graph.expose import elem_types
from ..intake.catalog import tensor_shapes
from .base import Target, check_class, check_output_name, static_dims
from .detections import CONF, IOU_NMS, MAX_DET, Detections, decode, detections

_PASS = {"Identity", "Reshape", "Cast", "QuantizeLinear", "DequantizeLinear"}   # as intake skips them


@dataclass(frozen=True)
class Head:
    """Where a detector's pre-NMS head is: `tensor` [N, 4+K, A] ("boxes_first") or [N, A, 5+K]
    ("anchors_first"); `logits` [N, K, A], the class scores before their Sigmoid (boxes_first)."""
    layout: str
    tensor: str
    logits: str | None
    classes: int
    anchors: int
    extra: int = 0     # rows after the classes (mask coefficients, keypoints, angle): not scores


def _producers(proto) -> dict:
    return {o: n for n in proto.graph.node for o in n.output}


def _ancestors(proto, name: str) -> set[str]:
    producers, seen, todo = _producers(proto), set(), [name]
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producers.get(t)
        if node is not None:
            todo.extend(i for i in node.input if i)
    return seen


def _concat_axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def _through(producers, name: str):
    node = producers.get(name)
    while node is not None and node.op_type in _PASS:
        node = producers.get(node.input[0])
    return node


def find_head(proto, output: str, shapes: dict) -> Head:
    """The pre-NMS head feeding `output` (module doc), or one line why there is none. Inputs after
    the class scores (YOLOv8-seg's mask coefficients, -pose's keypoints, -obb's angle) are kept
    out of the scores (Head.extra)."""
    producers, upstream = _producers(proto), _ancestors(proto, output)
    found = []
    for node in proto.graph.node:
        if node.op_type != "Concat" or node.output[0] not in upstream or len(node.input) < 2 \
                or _concat_axis(node) not in (1, -2):
            continue
        out, boxes = shapes.get(node.output[0], ()), shapes.get(node.input[0], ())
        sig = _through(producers, node.input[1])
        if sig is None or sig.op_type != "Sigmoid" or len(out) != 3 or len(boxes) != 3 or boxes[1] != 4 \
                or not isinstance(out[1], int) or not isinstance(out[2], int):
            continue
        extras = [shapes.get(t, ()) for t in node.input[2:]]
        if not all(len(e) == 3 and isinstance(e[1], int) for e in extras):
            continue
        extra = sum(e[1] for e in extras)   # the logits' own dims may be symbolic after a Reshape(-1)
        if out[1] - 4 - extra > 0:
            found.append(Head("boxes_first", node.output[0], sig.input[0], out[1] - 4 - extra, out[2], extra))
    if found:
        return found[-1]   # the one nearest the output
    shape = shapes.get(output, ())
    if len(shape) == 3 and isinstance(shape[2], int) and isinstance(shape[1], int) and 6 <= shape[2] < shape[1]:
        return Head("anchors_first", output, None, shape[2] - 5, shape[1])
    raise OnnxCamError(f"no detection head found before output {output!r} (shape {list(shape)}): Detect "
                       "explains YOLO-style heads, [N, 4+K, A] ending in Concat(boxes, Sigmoid(classes)) "
                       "or [N, A, 5+K]; choose the head's output with --output NAME")


def _neck(proto, head: Head) -> list[str]:
    """The tensors feeding the head's class branches, finest first: walking back from each input of
    the logits' Concat, the first tensor that two convolutions read (the box and the class branch)."""
    producers = _producers(proto)

    def unquantized(t: str) -> str:   # a QDQ build reads DequantizeLinear(QuantizeLinear(t)): count t
        dq = producers.get(t)
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else t
    convs_reading: dict[str, int] = {}
    for n in proto.graph.node:
        if n.op_type == "Conv":
            t = unquantized(n.input[0])
            convs_reading[t] = convs_reading.get(t, 0) + 1
    concat = _through(producers, head.logits)
    if concat is None or concat.op_type != "Concat":
        return []
    neck = []
    for x in concat.input:
        node, t = producers.get(x), x
        while node is not None and convs_reading.get(t, 0) < 2:
            t = node.input[0]
            node = producers.get(t)
        if convs_reading.get(t, 0) >= 2:
            neck.append(t)
    return neck


def _best_class(b, scores: str, axis: int, classes: int) -> str:
    """Each candidate's score in its own best class: Σ_k scores ⊙ (argmax == k) over `axis`. The
    one-hot mask is integer-derived, so constant to the gradient, and LRP passes relevance
    through Mul/ReduceSum (a ReduceMax would have no relevance rule); equal to the max."""
    shape = [1, 1, 1]
    shape[axis] = classes
    top = b.op("ArgMax", [scores], hint="target_argmax", axis=axis, keepdims=1)
    same = b.op("Equal", [top, b.const(np.arange(classes, dtype=np.int64).reshape(shape), "classes")])
    one_hot = b.op("Cast", [same], hint="target_own_class", to=onnx.TensorProto.FLOAT)
    return b.reduce("ReduceSum", b.op("Mul", [scores, one_hot], hint="target_masked"), [axis], keepdims=0,
                    hint="target_best_class")


def _float(b, name: str) -> str:
    """name as float32 (an FP16 build's head is float16; the target's one-hot masks are float32)."""
    if elem_types(b.model).get(name, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT:
        return name
    return b.op("Cast", [name], hint="target_float", to=onnx.TensorProto.FLOAT)


def _model_output(b, name: str) -> str:
    """The model's own tensor behind `name` (apply_target casts a non-float output, e.g. NMS's
    int64 indices, with a node not yet in the graph)."""
    pending = {o: n for n in b.nodes for o in n.output}
    while name in pending:
        name = pending[name].input[0]
    return name


class Detect(Target):
    """cls: the class scored at every candidate (None: each candidate's own best class, which is the
    class of the detection it makes). candidate: the column explained when explain names none
    (None: each image's highest-scoring candidate, i.e. its best detection). output: the output
    the head feeds (None: the first)."""

    def __init__(self, cls: int | None = None, candidate: int | None = None, output: str | None = None) -> None:
        self.class_id = check_class(cls)
        self.cls = check_class(candidate, "candidate")
        self.output = check_output_name(output)
        self.head: Head | None = None
        self.neck: list[str] = []

    def __repr__(self) -> str:
        which = "each candidate's best class" if self.class_id is None else f"class {self.class_id}"
        return f"Detect({which}, candidate={self.cls}, output={self.output})"

    @property
    def classes(self) -> int | None:
        """K, the detector's classes (its labels name these, not S's candidate columns)."""
        return None if self.head is None else self.head.classes

    def score(self, b, name, shape):
        head = find_head(b.model, _model_output(b, name), tensor_shapes(b.model))
        self.head, self.neck = head, _neck(b.model, head) if head.logits else []
        if self.class_id is not None and self.class_id >= head.classes:
            raise OnnxCamError(f"class {self.class_id} is out of range: the detector has {head.classes} "
                               f"classes (0..{head.classes - 1})")
        if head.layout == "boxes_first":   # the logits' dims may be symbolic after a Reshape(-1): fix them
            logits = b.op("Reshape", [_float(b, head.logits), b.const(np.array([0, head.classes, head.anchors],
                                                                                np.int64))], hint="target_logits")
            if self.class_id is None:
                s = _best_class(b, logits, 1, head.classes)
            else:
                s = b.op("Gather", [logits, b.const(np.int64(self.class_id), "target_class")],
                         hint="target_class_logit", axis=1)
            return b.op("Sigmoid", [s], hint="target_confidence")
        head = Head(head.layout, _float(b, head.tensor), head.logits, head.classes, head.anchors)
        obj = b.op("Gather", [head.tensor, b.const(np.int64(4), "objectness")], hint="target_objectness", axis=2)
        if self.class_id is None:
            probs = b.op("Slice", [head.tensor, b.const(np.array([5], np.int64)),
                                   b.const(np.array([5 + head.classes], np.int64)),
                                   b.const(np.array([2], np.int64))], hint="target_classes")
            cls = _best_class(b, probs, 2, head.classes)
        else:
            cls = b.op("Gather", [head.tensor, b.const(np.int64(5 + self.class_id), "target_class")],
                       hint="target_class_probability", axis=2)
        return b.op("Mul", [obj, cls], hint="target_confidence")

    def auto_layer(self, proto, layers):
        by_name = {layer.name: layer for layer in layers}
        finest = next((by_name[t] for t in self.neck if t in by_name), None)
        return finest or super().auto_layer(proto, layers)


class DetectHead(Target):
    """S = the pre-NMS head tensor itself, flattened (one forward gives every candidate's box and
    class confidences: targets/detections.py decodes them). Not for explaining."""
    class_scores = False

    def __init__(self, output: str | None = None) -> None:
        self.output = check_output_name(output)
        self.head: Head | None = None

    @property
    def classes(self) -> int | None:
        return None if self.head is None else self.head.classes

    def score(self, b, name, shape):
        shapes = tensor_shapes(b.model)
        self.head = find_head(b.model, _model_output(b, name), shapes)
        static_dims(shapes[self.head.tensor], f"the detection head {self.head.tensor!r}")
        return b.op("Flatten", [_float(b, self.head.tensor)], hint="target_head", axis=1)

    def values(self, flat: np.ndarray) -> np.ndarray:
        """The head [N, 4+K, A] or [N, A, 5+K] from S's flat rows."""
        h = self.head
        shape = (4 + h.classes + h.extra, h.anchors) if h.layout == "boxes_first" else (h.anchors, 5 + h.classes)
        return np.asarray(flat).reshape((len(flat),) + shape)



def find_detections(ex, x, conf: float = CONF, iou: float = IOU_NMS, max_det: int = MAX_DET) -> list[Detections]:
    """Each image's detections (targets/detections.py) from one forward of the head of `ex`'s
    model (the output its target names, else the first); x: a preprocessed batch."""
    head = DetectHead(output=getattr(ex.target, "output", None))
    flat, _ = ex.with_target(head).forward(x)
    boxes, conf_all = decode(head.values(flat), head.head.layout, head.head.classes)
    return [detections(b, c, conf, iou, max_det) for b, c in zip(boxes, conf_all)]
