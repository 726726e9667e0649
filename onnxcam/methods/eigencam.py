"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): first principal component of the activations.

Reshape A to (hw, C), center each channel, SVD, project onto the first right singular vector
(as pytorch-grad-cam does). The sign of a singular vector is arbitrary; we fix it so the map
correlates positively with the channel-mean activation, so results are deterministic.
"""
from __future__ import annotations

import numpy as np

from .base import Method, Request, register


def principal_map(acts: np.ndarray) -> np.ndarray:
    """[C, h, w] -> [h, w] projection on the first principal component, sign fixed."""
    c, h, w = acts.shape
    m = acts.reshape(c, h * w).T.astype(np.float64)
    m = m - m.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    proj = m @ vt[0]
    ref = acts.mean(axis=0).ravel().astype(np.float64)
    if np.dot(proj - proj.mean(), ref - ref.mean()) < 0:
        proj = -proj
    return proj.reshape(h, w).astype(np.float32)


def _compute(req: Request) -> dict[str, np.ndarray]:
    return {layer.name: np.stack([principal_map(a) for a in req.activations[layer.name]])
            for layer in req.layers}


EIGENCAM = register(Method("eigencam", "Eigen-CAM", "Muhammad & Yeasin, Eigen-CAM: Class Activation "
                           "Map using Principal Components, IJCNN 2020", _compute))
