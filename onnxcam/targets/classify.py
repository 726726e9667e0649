"""Classify: today's behaviour as a target. S = the logits of one [N, K] output (intake skips a
final Softmax/Sigmoid as it does without a target); `output` picks the head of a multi-output
model, `cls` the class explained when explain names none."""
from __future__ import annotations

from .base import Target, check_class, check_output_name


class Classify(Target):
    def __init__(self, cls: int | None = None, output: str | None = None) -> None:
        self.cls = check_class(cls)
        self.output = check_output_name(output)

    def score(self, b, name, shape):
        return name  # intake checks it is [N, K] and finds the logits before Softmax/Sigmoid
