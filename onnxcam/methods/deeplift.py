"""DeepLIFT with the rescale rule (Shrikumar et al., Learning Important Features Through Propagating
Activation Differences, ICML 2017), as Captum's `DeepLift` computes it.

Two runs: one forward of the baseline that returns the reference activations of every
nonlinearity (graph/rules/deeplift.py bakes them into the graph), then one run of the backward
engine with the DeepLIFT rule set, whose "gradient" at the input is the multiplier m; the
attribution is (x − x̄) ⊙ m [N, C, H, W] in `Result.pixels["input"]`, the map its channel sum
(signed). Completeness Σ attr = S(x) − S(x̄) is reported per image in `Result.conservation` and
a note, as for Integrated Gradients (exact up to float32 rounding on ReLU / MaxPool networks).

The baseline is one image for the whole batch, since its activations are constants of the graph:
`zero` (Captum's default: 0 in the model's input space) or `black` (a black photo preprocessed).
"""
from __future__ import annotations

import numpy as np

from ..graph.expose import SCORES, forward_graph
from ..graph.rules.deeplift import deeplift_rules, reference_tensors
from . import options as opt
from .attribution import INPUT, baseline, channels_first, class_seeds, completeness, pixel_result
from .base import Method, Request, register

BASELINES = ("zero", "black")


def references(ex, base: np.ndarray, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({tensor: value [1, ...] at the baseline} for the rules, the scores of the baseline [1, K])
    from one forward run of the baseline image base [1, ...]."""
    model = ex.model
    names = reference_tensors(model.proto)
    sess, carried = ex.sessions.get(("deeplift-reference", kind), lambda: forward_graph(
        model.proto, model.score_name, names))
    what = {SCORES: "the scores of the DeepLIFT baseline"} | {
        carried[n]: f"tensor {n} at the DeepLIFT baseline" for n in names}
    out = ex._run(sess, {model.input_name: base.astype(np.float32)}, what)
    return {n: out[carried[n]] for n in names}, out[SCORES]


def _deeplift(req: Request) -> dict[str, np.ndarray]:
    ex = req.explainer
    kind = opt.option(req, "baseline", "zero", opt.choice(BASELINES))
    base = baseline(req, kind)[:1]
    refs, at_baseline = references(ex, base, kind)
    seeds = class_seeds(req)
    name = ex.model.input_name
    _, _, _, grads = ex.gradients(req.x, [name], seeds, rules_name=f"deeplift:{kind}",
                                  rules=lambda: deeplift_rules(refs))
    layout = ex.model.layout
    attr = channels_first(req.x.astype(np.float64) - base, layout) * grads[name].astype(np.float64)
    completeness(req, attr, req.scores, at_baseline.astype(np.float64), seeds, "DeepLIFT",
                 "exact on ReLU/MaxPool networks; ops without a rescale rule pass their gradient")
    return pixel_result(req, attr, magnitude=False)


register(Method("deeplift", "DeepLIFT (rescale)", "Shrikumar et al., Learning Important Features Through "
                "Propagating Activation Differences, ICML 2017 (Captum's DeepLift)", _deeplift,
                order="signed", options=("baseline",), own_run=True))
