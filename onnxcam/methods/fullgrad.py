"""FullGrad (Srinivas & Fleuret, NeurIPS 2019), as pytorch-grad-cam's `FullGrad` computes it.

FullGrad splits the score into an input-gradient term and one bias-gradient term per layer with a
bias: S(x) = ∇ₓS·x + Σ_layers Σ_c b_c·Σ_hw ∂S/∂z_c. The map sums, at input resolution,
ψ(|∇ₓS ⊙ x|) per input channel and ψ(|b_c ∂S/∂z_c|) per channel of every bias layer, ψ = min-max
per map then bilinear resize, and min-max normalizes the total.

Bias layers are the catalog tensors made by a Conv with a bias or by a BatchNormalization (bias
β − μγ/√(σ²+ε)), pytorch-grad-cam's Conv2d and BatchNorm2d modules with a bias. Where the
exporter or intake folded a BatchNorm into its Conv, the Conv's bias is the BatchNorm's (plus the
conv's own) and ∂S/∂z at the Conv output is ∂S/∂z at the BatchNorm output, so the term is the
torch module's. All bias gradients come from one backward pass (the engine's, with every bias
layer as an output). Resizing is linear, so each layer's channel maps are summed at feature
resolution and resized once: the same sum as resizing each channel, at a fraction of the cost.
"""
from __future__ import annotations

import numpy as np

from .. import postprocess
from ..graph.constants import ConstantValues
from .base import Method, Request, register

INPUT = "input"


def bias_layers(model) -> list[tuple[str, np.ndarray]]:
    """(catalog layer, bias [C]) for every layer made by a Conv with a bias or a BatchNormalization."""
    values = ConstantValues(model.proto)
    producers = {n.output[0]: n for n in model.proto.graph.node if n.output}
    found = []
    for layer in model.layers:
        node = producers.get(layer.name)
        bias = None
        if node is not None and node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
            bias = values.get(node.input[2])
        elif node is not None and node.op_type == "BatchNormalization":
            gamma, beta, mean, var = (values.get(i) for i in node.input[1:5])
            if not any(v is None for v in (gamma, beta, mean, var)):
                eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
                bias = beta - mean * gamma / np.sqrt(var.astype(np.float64) + eps)
        if bias is not None and bias.shape == (layer.channels,):
            found.append((layer.name, bias.astype(np.float64)))
    return found


def _channel_minmax_sum(maps: np.ndarray) -> np.ndarray:
    """Σ_c minmax(maps[:, c]) for [N, C, h, w] -> [N, h, w] (float64)."""
    return postprocess.minmax(maps, postprocess.EPS).astype(np.float64).sum(axis=1)


def _fullgrad(req: Request) -> dict[str, np.ndarray]:
    ex = req.explainer
    model = ex.model
    layers = bias_layers(model)
    names = [model.input_name] + [name for name, _ in layers]
    scores, targets, _, grads = ex.gradients(req.x, names, req.targets)
    req.scores, req.targets = scores, targets
    x = req.x.transpose(0, 3, 1, 2) if model.layout == "NHWC" else req.x
    size = model.image_shape[1:]
    total = _channel_minmax_sum(np.abs(grads[model.input_name].astype(np.float64) * x))
    for name, bias in layers:
        term = _channel_minmax_sum(np.abs(bias[None, :, None, None] * grads[name]))
        total += postprocess.resize(term, size)
    req.notes.append(f"fullgrad: the input term and {len(layers)} bias layers")
    return {INPUT: total.astype(np.float32)}


register(Method("fullgrad", "FullGrad", "Srinivas & Fleuret, Full-Gradient Representation for Neural "
                "Network Visualization, NeurIPS 2019", _fullgrad, order="minmax_resize", own_run=True))
