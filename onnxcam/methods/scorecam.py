"""Score-CAM (Wang et al., CVPR-W 2020), two named variants that never mix.

- `scorecam` follows the authors' official code: masks are the activations upsampled with
  F.interpolate(align_corners=False) and min-max normalized; constant channels get weight 0 and
  no forward pass; the weight of channel k is the softmax over classes of f(X ⊙ H_k) at the target;
  map = ReLU(Σ_k s_k U_k) at input resolution, then min-max. (No baseline subtraction, as in the
  code; the paper also describes one.) The probability is the model's own where it has one (a
  sigmoid for multi-label heads) and the raw target score where S's columns are not classes
  (Segment, Embed, Output: metrics.common.followed_scores).
- `scorecam-pgc` matches pytorch-grad-cam's ScoreCAM: align_corners=True upsampling, masks
  (U - min)/(max - min + 1e-8) (constant channels become all-zero masks), weights = softmax over
  channels of the raw target logit of f(X ⊙ H_k), map at feature resolution, ReLU, min-max, resize.

Both batch masks through one in-graph masking session, compute identical masks once, and can keep
only the `top_k` channels with the largest spatial variance (Faster Score-CAM).
"""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError
from ..metrics.common import followed_scores
from ..postprocess import softmax
from .base import EIGEN_SMOOTH, Method, Request, channel_weighted, register


def plan_channels(acts: np.ndarray, skip_constant: bool, top_k: int | None):
    """Which channels to score for one image [C, h, w].

    Returns (channels, unique_rows, inverse): `channels` are the scored channel indices,
    `unique_rows` index into `channels` for the distinct masks (masks are min-max normalized, so
    channels equal up to a positive affine map share one mask), and channels[i] uses the scores of
    unique mask inverse[i].
    """
    c = acts.shape[0]
    flat = acts.reshape(c, -1).astype(np.float32)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    channels = np.flatnonzero(hi > lo) if skip_constant else np.arange(c)
    if top_k is not None and top_k < channels.size:
        var = flat[channels].var(axis=1)
        keep = np.argsort(-var, kind="stable")[:top_k]
        channels = np.sort(channels[keep])
    if channels.size == 0:
        return channels, channels, channels
    span = np.where(hi > lo, hi - lo, 1.0)[channels, None]
    normed = (flat[channels] - lo[channels, None]) / span
    _, unique_rows, inverse = np.unique(normed, axis=0, return_index=True, return_inverse=True)
    return channels, unique_rows, inverse.reshape(-1)


def _scorecam(req: Request, official: bool) -> dict[str, np.ndarray]:
    top_k = req.options.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise OnnxCamError(f"top_k (--top-k) is the number of channels Score-CAM keeps: a whole number "
                           f">= 1, got {top_k!r}")
    ex = req.explainer
    if official and ex.model.num_classes == 1 and np.allclose(followed_scores(ex, np.array([[-3.0], [3.0]])), 1):
        # a class score whose probability is a softmax over its one column: 1 for every channel
        # (region sums and similarities are weighed by their raw S, a sigmoid head by its sigmoid)
        raise OnnxCamError("scorecam weighs each channel by the softmax over classes of its masked score, "
                           "which is 1 for every channel when the model has one class column; use "
                           "scorecam-pgc (softmax over channels)")

    def weigh(layer, i, a):
        weights = np.zeros(len(a))
        channels, unique_rows, inverse = plan_channels(a, skip_constant=official, top_k=top_k)
        if channels.size == 0:
            return weights
        maps = a[channels[unique_rows]][:, None]
        scores = ex.masked_scores(req.x[i:i + 1], maps, align_corners=not official,
                                  eps=0.0 if official else 1e-8)[inverse]
        c = req.targets[i]
        weights[channels] = followed_scores(ex, scores)[:, c] if official else softmax(scores[:, c])  # softmax / sigmoid / raw S
        return weights
    return channel_weighted(req, weigh)


SCORECAM = register(Method(
    "scorecam", "Score-CAM (official code)",
    "Wang et al., Score-CAM: Score-Weighted Visual Explanations for CNNs, CVPR-W 2020",
    lambda req: _scorecam(req, official=True), order="resize_relu_minmax", options=("top_k", EIGEN_SMOOTH)))
SCORECAM_PGC = register(Method(
    "scorecam-pgc", "Score-CAM (pytorch-grad-cam variant)",
    "Wang et al., CVPR-W 2020; weights as in pytorch-grad-cam's ScoreCAM",
    lambda req: _scorecam(req, official=False), options=("top_k", EIGEN_SMOOTH)))
