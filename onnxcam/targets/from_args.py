"""The CLI's task flags (--task, --mask, --reference, --output) turned into an Explainer with its
target, in one place so `explain` (and later commands) only call `add_task_flags` and
`explainer_for_task`. The class explained stays the job of --target / --class."""
from __future__ import annotations

import argparse

import numpy as np

from ..errors import OnnxCamError
from ..preprocess import load_images, read_rgb
from .classify import Classify
from .embed import Embed
from .multilabel import MultiLabel
from .output import Output
from .segment import Segment

TASKS = ("classify", "multilabel", "segment", "embed", "output")


def add_task_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task (what score is explained; default: classify)")
    g.add_argument("--task", choices=TASKS, default="classify",
                   help="classify: class logits; multilabel: a sigmoid head's logit; segment: a class's "
                        "logits summed over --mask or its predicted region; embed: cosine similarity of "
                        "the embedding to --reference's; output: an element of --output NAME:INDEX")
    g.add_argument("--mask", metavar="PNG", help="segment: the region (nonzero pixels), at the model's "
                                                 "input or output size")
    g.add_argument("--threshold", type=float, metavar="T",
                   help="segment: the region is where the output exceeds T (a probability for a model "
                        "ending in a Sigmoid; 0.3 for the PP-OCR text detector) instead of the argmax "
                        "region (one-channel sigmoid outputs: default 0.5)")
    g.add_argument("--reference", metavar="IMAGE", help="embed: the image whose embedding is compared")
    g.add_argument("--output", dest="output_spec", metavar="NAME[:INDEX]",
                   help="the model output to use (output task: and the flat element index)")


def _output_spec(text: str | None) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    name, sep, index = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        return text, None
    if not name or not index.isdigit():
        raise OnnxCamError(f"--output must be NAME or NAME:INDEX with INDEX an integer >= 0, got {text!r}")
    return name, int(index)


def explainer_for_task(args, make):
    """The Explainer for args.task; make(target) builds one with the command's other flags."""
    name, index = _output_spec(args.output_spec)
    task = args.task
    for flag, value, wants in (("--mask", args.mask, "segment"), ("--threshold", args.threshold, "segment"),
                               ("--reference", args.reference, "embed")):
        if value is not None and task != wants:
            raise OnnxCamError(f"{flag} is for --task {wants}, not --task {task}")
    if index is not None and task != "output":
        raise OnnxCamError(f"--output NAME:INDEX is for --task output; with --task {task} give --output NAME")
    if task == "classify":
        return make(Classify(output=name) if name else None)
    if task == "multilabel":
        return make(MultiLabel(output=name))
    if task == "segment":
        mask = None if args.mask is None else read_rgb(args.mask).any(axis=2)
        return make(Segment(mask=mask, output=name, threshold=args.threshold))
    if task == "output":
        return make(Output(name, index))
    if args.reference is None:
        raise OnnxCamError("--task embed needs --reference IMAGE: the image whose embedding is compared")
    ex = make(Output(name))
    embedding = ex.forward(load_images([args.reference], ex.preprocess))[0][0]
    return ex.with_target(Embed(np.asarray(embedding), output=name))
