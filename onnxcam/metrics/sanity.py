"""Sanity check by cascading randomization (Adebayo et al., NeurIPS 2018): explain the same images
with the top 1, 2, ... parametric layers re-initialized and report how similar each map stays to the
original: Spearman rank correlation and SSIM (Wang et al., 2004; 7x7 Gaussian window, sigma 1.5,
maps in [0, 1]). A method that passes decorrelates as more layers are randomized.

Each step is flagged `stays_similar` when its mean Spearman is above SIMILAR_SPEARMAN (0.5): the
maps then still rank most pixels as before although the layers that decide the class are random,
so they show the image more than the model. 0.5 is our choice, not a published threshold: on the
bundled EfficientNet-Lite0, Grad-CAM falls to 0.46 with the top layer random and to about 0 with
the top 8, while Grad-CAM++ and Score-CAM keep 0.96-0.98 with the top layer random."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError
from ..graph.randomize import parametric_layers, randomized
from .agreement import spearman

SIMILAR_SPEARMAN = 0.5   # above it, a step's maps "stay similar" to the original's (flagged)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda m: cv2.GaussianBlur(m, (7, 7), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def check_randomization_steps(steps, total: int) -> list[int]:
    """Steps are counts of top layers to randomize: whole numbers in [1, total] (a negative count
    would slice from the other end and randomize nearly everything; one over the total would
    report more layers randomized than there are)."""
    values = [steps] if isinstance(steps, (int, np.integer)) else list(steps)
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= total]
    if bad or not values:
        raise OnnxCamError(f"randomization steps (--sanity) are numbers of top layers to randomize, whole "
                           f"numbers from 1 to {total} (the model's layers with weights); got "
                           f"{bad[0] if bad else 'none'!r}")
    return [int(k) for k in values]


def cascading_randomization(ex, x: np.ndarray, method: str, layers="auto", steps=None,
                            seed: int = 0, base=None, **options) -> dict:
    """Per randomization step k (top-k layers random): mean Spearman and SSIM of the maps to the
    originals. Targets stay the original model's classes. `base`: the original Result of this
    method on x, when the caller already has it."""
    base = base or ex.explain(x, method=method, layers=layers, **options)
    names = base.layers
    total = len(parametric_layers(ex.model.proto))
    steps = check_randomization_steps(steps, total) if steps is not None else \
        [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= total] + [total]
    rows = []
    for k in sorted(set(steps)):
        rnd = ex.derived(randomized(ex.model.proto, k, seed))
        res = rnd.explain(x, method=method, layers=names, target=base.target, **options)
        sp = [spearman(base.maps[n][i], res.maps[n][i]) for n in names for i in range(len(x))]
        ss = [ssim(base.maps[n][i], res.maps[n][i]) for n in names for i in range(len(x))]
        rows.append({"randomized_layers": k, "spearman": float(np.mean(sp)), "ssim": float(np.mean(ss)),
                     "stays_similar": bool(np.mean(sp) > SIMILAR_SPEARMAN)})
    return {"method": method, "layers": names, "steps": rows, "parametric_layers": total}
