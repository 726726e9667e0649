"""MultiLabel: one class of a sigmoid (multi-label) head, explained at its pre-sigmoid logit.

A sigmoid head's classes are independent, so the explained score is the logit of class `cls`
alone (not a softmax-contrasted score); probabilities shown are sigmoids. The output must come
from a Sigmoid (possibly through reshapes); anything else is refused so a softmax classifier is
not silently explained as multi-label (use Classify)."""
from __future__ import annotations

from ..errors import OnnxCamError
from .base import Target, check_class, check_output_name

_PASS = {"Identity", "Flatten", "Reshape", "Squeeze", "Cast"}


class MultiLabel(Target):
    def __init__(self, cls: int | None = None, output: str | None = None) -> None:
        self.cls = check_class(cls)
        self.output = check_output_name(output)

    def score(self, b, name, shape):
        producers = {o: n for n in b.model.graph.node for o in n.output}
        node = producers.get(name)
        while node is not None and node.op_type in _PASS:
            node = producers.get(node.input[0])
        if node is None or node.op_type != "Sigmoid":
            found = node.op_type if node is not None else "a graph input"
            raise OnnxCamError(f"output {name!r} comes from {found}, not a Sigmoid: MultiLabel explains "
                               "sigmoid heads; use Classify for softmax classifiers or Output for raw outputs")
        return name  # intake explains the Sigmoid's input (the logit) with score="logits"
