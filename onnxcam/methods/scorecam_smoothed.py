"""SS-CAM and IS-CAM, Score-CAM's smoothed and integrated variants, as TorchCAM computes them.

Masks follow TorchCAM's Score-CAM: each channel min-max normalized at feature resolution
((A − min) / (max + 1e-8) after the shift), upsampled bilinearly (half-pixel, as F.interpolate
align_corners=False) to the input; the image is multiplied by each mask inside one graph
(graph/masking.py, masks used as given) and the weights are the softmax over channels of the mean
target score over `samples` runs (TorchCAM subtracts the unmasked image's score first, which the
softmax cancels). Map = ReLU(Σ_k w_k A_k), min-max, resize.

- `sscam` (Wang et al., SS-CAM, 2020): each run adds Gaussian noise of stdev `noise_std` (2.0,
  TorchCAM's default) to the upsampled mask. Draws: channel k of image i in run s comes from
  numpy's `default_rng([seed, i, s, k])`, so results do not depend on batching.
- `iscam` (Naidu et al., IS-CAM, 2020): run s scales the mask by c_s = Σ_{j≤s} j / samples (the
  cumulative coefficient TorchCAM uses, reaching (samples + 1) / 2 at the last run).

Cost: channels × samples masked forwards per image and layer.
"""
from __future__ import annotations

import numpy as np

from .. import postprocess
from ..postprocess import softmax
from . import options as opt
from .base import EIGEN_SMOOTH, Method, Request, channel_weighted, register

DEFAULTS = {"sscam": 35, "iscam": 10}
NOISE_STD = 2.0
CHANNELS_PER_CALL = 64   # masks built and sent at once: bounds the float32 masks held in memory


def torchcam_masks(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """[C, h, w] -> [C, H, W]: per channel (a − min) / (max − min + 1e-8), upsampled bilinearly."""
    a = a.astype(np.float32) - a.min(axis=(1, 2), keepdims=True)
    a = a / (a.max(axis=(1, 2), keepdims=True) + np.float32(1e-8))
    return postprocess.resize(a, hw)


def _smoothed(req: Request, kind: str) -> dict[str, np.ndarray]:
    ex = req.explainer
    samples = opt.option(req, "samples", DEFAULTS[kind], opt.count)
    std = opt.option(req, "noise_std", NOISE_STD, opt.noise_level) if kind == "sscam" else 0.0
    seed = opt.option(req, "seed", 0, opt.seed)
    hw = tuple(ex.model.image_shape[1:])

    def weigh(layer, i, a):
        masks = torchcam_masks(a, hw)
        c = req.targets[i]
        total = np.zeros(len(a))
        coeff = 0.0
        for s in range(samples):
            coeff += (s + 1) / samples
            for k0 in range(0, len(a), CHANNELS_PER_CALL):
                chunk = masks[k0:k0 + CHANNELS_PER_CALL]
                if kind == "sscam":
                    chunk = chunk + np.stack([np.random.default_rng([seed, i, s, k]).standard_normal(hw, np.float32)
                                              for k in range(k0, k0 + len(chunk))]) * np.float32(std)
                else:
                    chunk = chunk * np.float32(coeff)
                scores = ex.masked_scores(req.x[i:i + 1], chunk[:, None], align_corners=False, eps=None,
                                          what=kind.upper().replace("CAM", "-CAM"))
                total[k0:k0 + len(chunk)] += scores[:, c]
        return softmax(total / samples)
    return channel_weighted(req, weigh)


register(Method("sscam", "SS-CAM", "Wang et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature "
                "Localization, 2020 (TorchCAM's SSCAM)", lambda req: _smoothed(req, "sscam"),
                options=("samples", "noise_std", "seed", EIGEN_SMOOTH)))
register(Method("iscam", "IS-CAM", "Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based "
                "explanations, 2020 (TorchCAM's ISCAM)", lambda req: _smoothed(req, "iscam"),
                options=("samples", EIGEN_SMOOTH)))
