"""Relevance-based methods on the LRP engine.

- `relevancecam` (Lee et al., CVPR 2021; their official code): contrastive start relevance, the
  "relevance-cam" composite (z+ with the conv's own bias, a folded BatchNorm's shift left out and
  its negative scales flipping W+/W-, z^B on the first conv, pooling on clamp(x, 0)); w_k = mean
  over space of R_k at the layer; map = Σ_k w_k A_k, no ReLU, min-max. Where the exporter folded
  BN itself, the conv bias is presumed all BN shift (intake/bnfold.py says what that matches).
- `relevancecam-bias`: the same with every exported conv bias taken as the conv's own (raw in
  both z+ sums, BN shift included): onnxcam's recipe before BN folding was told apart.
- `lrp`: signed pixel relevance at the input for a composite (default EpsilonPlusFlat; AttnLRP,
  "attnlrp", on graphs with attention: graph/rules/lrp_attention.py), start
  = logit of the target; `Result.pixels['input']` holds R [N, C, H, W] and `Result.raw` Σ_c R,
  untouched; the map is Σ_c R scaled symmetrically at the 99.5th percentile of |R| to [0, 1]
  around 0.5 (0.5 = no relevance) for a diverging colormap (postprocess.signed_scale says why).
  `Result.conservation` holds Σ R / start at the input and at a few cuts of the graph, and a note
  warns when less than half (or over twice) the start reaches the input (conservation.py).
- `srmap`: LRP pixel relevance, then context-aware saliency on |R| (see `_srmap`).
"""
from __future__ import annotations

import numpy as np

from .. import conservation
from .base import Method, Request, register, weighted_sum

INPUT = "input"


def _composite(req: Request, cnn: str):
    """The composite asked for, else AttnLRP on graphs with attention and `cnn` on the others."""
    from ..graph.rules.lrp_attention import default_composite

    return req.options.get("composite") or default_composite(req.explainer.model, cnn)


def _relevancecam(req: Request, default_composite: str = "relevance-cam") -> dict[str, np.ndarray]:
    ex = req.explainer
    composite = _composite(req, default_composite)
    start = req.options.get("start", "contrastive")
    req.scores, req.targets, acts, rel = ex.relevance_run(req.x, req.layers, composite, req.targets, start)
    out = {}
    for layer in req.layers:
        w = rel[layer.name].mean(axis=(2, 3), dtype=np.float64)
        req.weights[layer.name] = w.astype(np.float32)
        out[layer.name] = weighted_sum(w, acts[layer.name])
    return out


def _input_relevance(req: Request, composite: str, start: str, method: str) -> np.ndarray:
    """Pixel relevance [N, C, H, W] (the engine returns NCHW whatever the model's layout), and
    how much of the start relevance it kept: Σ R / start at the input and at a few cuts of the
    graph, read from the same run (conservation.py), in req.conservation and a note."""
    ex, given = req.explainer, req.targets
    cuts = conservation.cut_layers(ex.model)
    req.scores, req.targets, _, rel = ex.relevance_run(req.x, [INPUT, *cuts], composite, given, start)
    req.pixels[INPUT] = rel[INPUT]
    seed = ex.model.seed_for(given, len(req.x))[1]
    if seed is None:   # each image's top-1, chosen in the graph
        seed = np.eye(req.scores.shape[1], dtype=np.float32)[np.asarray(req.targets)]
    order = cuts[::-1] + [INPUT]   # from the score down
    total = conservation.start_total(start, req.scores, seed)
    req.conservation = conservation.fractions({k: rel[k] for k in order}, total)
    magnitude = conservation.fractions({k: np.abs(rel[k]) for k in order}, np.abs(total))
    req.notes += conservation.notes(method, getattr(composite, "name", composite), req.conservation,
                                    magnitude, order)
    return rel[INPUT]


def _lrp(req: Request) -> dict[str, np.ndarray]:
    pixels = _input_relevance(req, _composite(req, "epsilon-plus-flat"),
                              req.options.get("start", "logit"), "lrp")
    return {INPUT: pixels.sum(axis=1)}


register(Method("relevancecam", "Relevance-CAM", "Lee et al., Relevance-CAM: Your Model Already Knows "
                "Where to Look, CVPR 2021", _relevancecam, order="minmax_resize",
                options=("composite", "start"), own_run=True))  # variants: another composite or start, by name
register(Method("relevancecam-bias", "Relevance-CAM (every conv bias as the conv's own)",
                "Lee et al., CVPR 2021; conv biases of the export used as they are",
                lambda req: _relevancecam(req, "relevance-cam-bias"), order="minmax_resize",
                options=("start",), own_run=True))
register(Method("lrp", "LRP (pixel relevance)", "Bach et al., PLoS ONE 2015; Montavon et al., "
                "Layer-Wise Relevance Propagation: An Overview, 2019", _lrp, order="signed",
                options=("composite", "start"), own_run=True))


def _srmap(req: Request) -> dict[str, np.ndarray]:
    """SR map (Li et al., 2019): LRP pixel relevance with the "sr" composite (LRP-0 with bias on
    convolutions, z+ on dense layers, winner-take-all MaxPool; start = logit of the target), |R| per
    channel scaled by its global maximum and read as an image, then context-aware saliency."""
    return {INPUT: sr_from_relevance(_input_relevance(req, "sr", "logit", "srmap"), req.explainer.threads)}


def sr_from_relevance(pixels: np.ndarray, threads: int | None = None) -> np.ndarray:
    """[N, C, H, W] pixel relevance -> [N, H, W] SR maps: |R| scaled by its global maximum (so the
    map does not depend on the scale of R), read as an RGB image, context-aware saliency (on
    `threads` onnxruntime threads, as the Explainer's sessions; None: onnxruntime's default)."""
    from ..saliency import context_aware_saliency

    maps = []
    for r in np.abs(pixels):
        img = r.transpose(1, 2, 0)
        img = img / img.max() if img.max() > 0 else img
        if img.shape[2] != 3:
            img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
        maps.append(context_aware_saliency(img, threads))
    return np.stack(maps)


register(Method("srmap", "SR map (salient relevance)", "Li et al., Beyond saliency: understanding "
                "CNNs from saliency prediction on layer-wise relevance propagation, Image and Vision "
                "Computing 2019; Goferman et al., Context-aware saliency detection, CVPR 2010",
                _srmap, own_run=True))
