"""Guided Backprop (Springenberg et al., ICLR-W 2015) and Guided Grad-CAM (Selvaraju et al., 2017).

Pixel-level: the guided gradient of the score with respect to the input image, [N, C, H, W]
(channels first whatever the model's layout), is returned in `Result.pixels`; the map is its
magnitude summed over channels. Guided Grad-CAM multiplies it by the Grad-CAM heatmap of each
layer at input resolution (as pytorch-grad-cam's example does).
"""
from __future__ import annotations

import numpy as np

from .. import postprocess
from ..graph.rules.guided import GUIDED_RULES
from .base import Method, Request, register
from .gradcam import gradcam

INPUT = "input"


def guided_gradient(req: Request) -> np.ndarray:
    """Guided input gradient [N, C, H, W]; for own_run methods also fills scores and targets."""
    ex = req.explainer
    name = ex.model.input_name
    scores, targets, _, grads = ex.gradients(req.x, [name], req.targets, rules_name="guided",
                                             rules=GUIDED_RULES)
    if req.scores is None:
        req.scores, req.targets = scores, targets
    return grads[name]


def _guided_backprop(req: Request) -> dict[str, np.ndarray]:
    pixels = guided_gradient(req)
    req.pixels[INPUT] = pixels
    return {INPUT: np.abs(pixels).sum(axis=1)}


def _guided_gradcam(req: Request) -> dict[str, np.ndarray]:
    pixels = guided_gradient(req)
    size = req.x.shape[2:] if req.explainer.model.layout == "NCHW" else req.x.shape[1:3]
    out = {}
    for layer in req.layers:
        a, g = req.activations[layer.name], req.gradients[layer.name]
        heat = postprocess.normalize(gradcam(a.astype(np.float64), g.astype(np.float64))[0], size)
        product = pixels * heat[:, None]
        req.pixels[layer.name] = product
        out[layer.name] = np.abs(product).sum(axis=1)
    return out


register(Method("guided-backprop", "Guided Backprop", "Springenberg et al., Striving for Simplicity: "
                "The All Convolutional Net, ICLR-W 2015", _guided_backprop, own_run=True))
register(Method("guided-gradcam", "Guided Grad-CAM", "Selvaraju et al., Grad-CAM, ICCV 2017",
                _guided_gradcam, needs_gradients=True))
