"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): first principal component of the activations.

base.principal_map: the first principal component of A's channels at each position, sign fixed.
"""
from __future__ import annotations

import numpy as np

from .base import Method, Request, principal_map, register


def _compute(req: Request) -> dict[str, np.ndarray]:
    return {layer.name: np.stack([principal_map(a) for a in req.activations[layer.name]])
            for layer in req.layers}


EIGENCAM = register(Method("eigencam", "Eigen-CAM", "Muhammad & Yeasin, Eigen-CAM: Class Activation "
                           "Map using Principal Components, IJCNN 2020", _compute))
