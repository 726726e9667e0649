"""What every method shares: the request it gets and the registry it lives in.

A method is small: it says how to weigh what the engine returned. It gets a `Request` (activations
and scores from one forward run, targets, and the explainer for any further runs) and returns raw
maps per layer at feature resolution. Normalization order is the method's own (see postprocess).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import OnnxCamError


@dataclass
class Request:
    explainer: object                 # the Explainer, for methods that need more runs
    x: np.ndarray                     # preprocessed batch
    layers: list                      # LayerInfo per requested layer
    targets: object                   # [N] class per image (the user's target spec for own_run methods)
    scores: np.ndarray | None         # [N, K] explained scores of the unmodified images
    activations: dict[str, np.ndarray]  # layer name -> [N, C, h, w]
    gradients: dict[str, np.ndarray] = field(default_factory=dict)  # dS/dA, same shapes
    options: dict = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # channel weights [N, C], if any
    pixels: dict[str, np.ndarray] = field(default_factory=dict)   # pixel attributions [N, C, H, W]
    conservation: dict[str, np.ndarray] = field(default_factory=dict)  # LRP: Σ R / start [N] per layer
    notes: list[str] = field(default_factory=list)                    # the method's own notes


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    reference: str
    compute: Callable[[Request], dict[str, np.ndarray]]
    order: str = "relu_minmax_resize"
    options: tuple[str, ...] = ()
    needs_gradients: bool = False
    own_run: bool = False   # the method's own engine run yields scores and targets: no extra forward

    @property
    def signed(self) -> bool:
        """Maps centred on 0.5 (signed relevance): drawn with a diverging colormap, not JET."""
        return self.order == "signed"


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise OnnxCamError(f"unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def scores_and_targets(req: Request) -> tuple[np.ndarray, np.ndarray]:
    """For own_run methods that perturb the input: the scores of the unmodified images and the
    class explained per image (the given target, else each image's top-1), stored on req. Every
    modified image is scored for this class: its own top-1 would explain a different score."""
    ex = req.explainer
    scores, _ = ex.forward(req.x)
    targets = ex.model.check_targets(req.targets, len(req.x))
    req.scores, req.targets = scores, scores.argmax(axis=1) if targets is None else targets
    return req.scores, req.targets


def principal_map(acts: np.ndarray) -> np.ndarray:
    """[C, h, w] -> [h, w] projection on the first principal component, sign fixed.

    Reshape to (hw, C), center each channel, SVD, project onto the first right singular vector
    (pytorch-grad-cam's get_2d_projection). The sign of a singular vector is arbitrary; it is fixed
    so the map correlates positively with the channel-mean, so results are deterministic."""
    c, h, w = acts.shape
    m = acts.reshape(c, h * w).T.astype(np.float64)
    m = m - m.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    proj = m @ vt[0]
    ref = acts.mean(axis=0).ravel().astype(np.float64)
    if np.dot(proj - proj.mean(), ref - ref.mean()) < 0:
        proj = -proj
    return proj.reshape(h, w).astype(np.float32)


#: The option of CAM methods that replaces the channel sum by the first principal component of the
#: weighted activations (pytorch-grad-cam's eigen_smooth: less noise, one dominant pattern).
EIGEN_SMOOTH = "eigen_smooth"


def eigen_smooth(req: Request) -> bool:
    value = req.options.get(EIGEN_SMOOTH, False)
    if not isinstance(value, (bool, np.bool_)):
        raise OnnxCamError(f"option eigen_smooth (--eigen-smooth) must be True or False, got {value!r}")
    return bool(value)


def channel_sum(weighted: np.ndarray, smooth: bool = False) -> np.ndarray:
    """Weighted activations [N, C, h, w] -> [N, h, w]: their sum over channels, or with eigen
    smoothing their first principal component."""
    if smooth:
        return np.stack([principal_map(m) for m in weighted])
    return weighted.sum(axis=1).astype(np.float32)


def weighted_sum(weights: np.ndarray, acts: np.ndarray, smooth: bool = False) -> np.ndarray:
    """Σ_k w[n,k] A[n,k] -> [N, h, w] (float64 accumulation, float32 result); with eigen
    smoothing, the first principal component of w ⊙ A."""
    if smooth:
        return channel_sum(weights.astype(np.float64)[:, :, None, None] * acts.astype(np.float64), True)
    return np.einsum("nk,nkhw->nhw", weights.astype(np.float64), acts.astype(np.float64)).astype(np.float32)


def channel_weighted(req: Request, weigh) -> dict[str, np.ndarray]:
    """Raw maps of a CAM method that weighs each image's channels with runs of its own (Score-CAM,
    Ablation-CAM): weigh(layer, i, a) gives image i's weights [C] from its activations a [C, h, w];
    the map is Σ_k w_k A_k (or its eigen_smooth principal component); weights are kept on req."""
    smooth = eigen_smooth(req)
    out = {}
    for layer in req.layers:
        acts = req.activations[layer.name]
        weights = np.stack([weigh(layer, i, a) for i, a in enumerate(acts)]).astype(np.float64)
        req.weights[layer.name] = weights
        out[layer.name] = weighted_sum(weights, acts, smooth)
    return out
