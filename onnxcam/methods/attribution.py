"""Input attributions from gradients at many modified inputs: saliency, SmoothGrad, VarGrad,
Input×Gradient, Integrated Gradients, GradientSHAP.

All of them are one batched gradient run of the score at the model input over a set of points
built from the image (the image itself, noisy copies, or points on the straight path from a
baseline), combined in float64. The attribution [N, C, H, W] (channels first whatever the model's
layout) is in `Result.pixels["input"]`; the map is its channel sum (signed methods) or the channel
sum of magnitudes (saliency family), as Captum's and PAIR-saliency's visualisations reduce them.

Definitions follow Captum (the peer that defines them), so attributions equal Captum's on the same
points: `IntegratedGradients` with its step rules (Gauss–Legendre by default, Riemann left, right,
middle, trapezoid), `InputXGradient`, `Saliency(abs=True)`, `NoiseTunnel` smoothgrad/vargrad over
Saliency, and `GradientShap` (noise added to the input, one baseline per sample drawn from the
baselines given, α ~ U(0, 1); attribution (x̃ − b)·∇S(b + α(x̃ − b)) averaged). Random draws come
from numpy's PCG64 with `seed` (default 0), so a run is reproducible; noise σ is `noise` times the
range (max − min) of each image's preprocessed values, as SmoothGrad's paper sets it.

The class explained at every point is the one chosen on the unmodified image (top-1 unless a
target is given): a path point's own top-1 would explain a different score at each step.

Integrated Gradients reports completeness (Sundararajan et al.'s axiom Σ attr = S(x) − S(b)) as
the fraction Σ attr / (S(x) − S(b)) per image in `Result.conservation["input"]` and a note; the
gap shrinks with more steps except where the path crosses kinks the quadrature misses.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError, describe
from .base import Method, Request, register

INPUT = "input"
RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
BASELINES = ("zero", "black", "blur", "noise")
DEFAULTS = {"steps": 32, "samples": 16, "noise": 0.15, "seed": 0, "rule": "gausslegendre", "baseline": "zero"}
#: Largest number of modified images per gradient call: bounds the float32 gradients held at once
#: (the engine itself splits each call into batches under the memory budget).
POINTS_PER_CALL = 32


def path_nodes(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(α, weight) of the quadrature of ∫₀¹ f(α) dα with `steps` nodes, as Captum places them."""
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (x + 1.0), 0.5 * w
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise OnnxCamError("rule riemann_trapezoid needs steps >= 2")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


def _option(req: Request, name: str, check) -> object:
    value = req.options.get(name, DEFAULTS[name])
    if not check(value):
        raise OnnxCamError(f"option {name} got {describe(value)}; {check.__doc__}")
    return value


def _positive_int(v):
    """give an int >= 1"""
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and 1 <= v <= 4096


def _noise_level(v):
    """give a number in [0, 10] (noise stdev as a fraction of each image's value range)"""
    return not isinstance(v, bool) and isinstance(v, (int, float, np.floating)) and 0 <= v <= 10


def _seed(v):
    """give an int >= 0"""
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 0


def _choice(options):
    def check(v):
        return isinstance(v, str) and v in options
    check.__doc__ = f"give one of {', '.join(options)}"
    return check


def _channels_first(arr: np.ndarray, layout: str) -> np.ndarray:
    return arr.transpose(0, 3, 1, 2) if layout == "NHWC" else arr


def _seeds(req: Request) -> np.ndarray:
    """Class weights [N, K] of the explained score per image, fixed on the unmodified images."""
    ex = req.explainer
    idx, seed = ex.model.seed_for(req.targets, len(req.x))
    scores, _ = ex.forward(req.x)
    if seed is None:
        idx = scores.argmax(axis=1)
        seed = np.zeros_like(scores, dtype=np.float32)
        seed[np.arange(len(idx)), idx] = 1.0
    req.scores, req.targets = scores, idx
    return seed


def _gradients(req: Request, points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """dS/dinput [M, C, H, W] (float64) at M points, S weighted by seeds [M, K]."""
    ex = req.explainer
    name = ex.model.input_name
    out = []
    for i in range(0, len(points), POINTS_PER_CALL):
        _, _, _, grads = ex.gradients(points[i:i + POINTS_PER_CALL].astype(np.float32), [name],
                                      seeds[i:i + POINTS_PER_CALL])
        out.append(grads[name].astype(np.float64))
    return np.concatenate(out)


def baseline(req: Request, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The baseline batch in the model's input space: zero (Captum's default), black (a black photo
    preprocessed), blur (each image blurred with σ = 1/10 of its larger side, Sturmfels et al.'s
    'blurred' baseline), noise (uniform in each image's value range)."""
    x = req.x.astype(np.float64)
    if kind == "zero":
        return np.zeros_like(x)
    if kind == "black":
        from ..inputs import to_batch
        spec = req.explainer.preprocess
        h, w = req.explainer.model.image_shape[1:]
        black, _ = to_batch(np.zeros((h, w, 3), np.uint8), spec)
        return np.broadcast_to(black.astype(np.float64), x.shape).copy()
    if kind == "noise":
        lo = x.min(axis=tuple(range(1, x.ndim)), keepdims=True)
        hi = x.max(axis=tuple(range(1, x.ndim)), keepdims=True)
        return lo + (hi - lo) * rng.random(x.shape)
    layout = req.explainer.model.layout
    hwc = x if layout == "NHWC" else x.transpose(0, 2, 3, 1)
    sigma = max(hwc.shape[1:3]) / 10
    blurred = np.stack([cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape) for img in hwc])
    return blurred if layout == "NHWC" else blurred.transpose(0, 3, 1, 2)


def _noise_sigma(x: np.ndarray, level: float) -> np.ndarray:
    axes = tuple(range(1, x.ndim))
    return level * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))


def _noisy_gradients(req: Request) -> np.ndarray:
    """Gradients at `samples` noisy copies of each image: [N, samples, C, H, W]."""
    samples = _option(req, "samples", _positive_int)
    level = _option(req, "noise", _noise_level)
    rng = np.random.default_rng(_option(req, "seed", _seed))
    seeds = _seeds(req)
    x = req.x.astype(np.float64)
    noisy = x[:, None] + _noise_sigma(x, level)[:, None] * rng.standard_normal((len(x), samples) + x.shape[1:])
    grads = _gradients(req, noisy.reshape((-1,) + x.shape[1:]), np.repeat(seeds, samples, axis=0))
    return grads.reshape((len(x), samples) + grads.shape[1:])


def _finish(req: Request, attr: np.ndarray, magnitude: bool) -> dict[str, np.ndarray]:
    req.pixels[INPUT] = attr.astype(np.float32)
    return {INPUT: (np.abs(attr) if magnitude else attr).sum(axis=1).astype(np.float32)}


def _saliency(req: Request) -> dict[str, np.ndarray]:
    seeds = _seeds(req)
    return _finish(req, np.abs(_gradients(req, req.x, seeds)), magnitude=True)


def _input_x_gradient(req: Request) -> dict[str, np.ndarray]:
    seeds = _seeds(req)
    layout = req.explainer.model.layout
    return _finish(req, _channels_first(req.x.astype(np.float64), layout) * _gradients(req, req.x, seeds), False)


def _smoothgrad(req: Request) -> dict[str, np.ndarray]:
    return _finish(req, np.abs(_noisy_gradients(req)).mean(axis=1), magnitude=True)


def _vargrad(req: Request) -> dict[str, np.ndarray]:
    g = np.abs(_noisy_gradients(req))   # Captum's NoiseTunnel vargrad over Saliency(abs=True)
    return _finish(req, (g ** 2).mean(axis=1) - g.mean(axis=1) ** 2, magnitude=True)


def _integrated_gradients(req: Request) -> dict[str, np.ndarray]:
    steps = _option(req, "steps", _positive_int)
    alphas, weights = path_nodes(steps, _option(req, "rule", _choice(RULES)))
    rng = np.random.default_rng(_option(req, "seed", _seed))
    base = baseline(req, _option(req, "baseline", _choice(BASELINES)), rng)
    seeds = _seeds(req)
    x = req.x.astype(np.float64)
    points = base[:, None] + alphas.reshape((1, -1) + (1,) * (x.ndim - 1)) * (x - base)[:, None]
    grads = _gradients(req, points.reshape((-1,) + x.shape[1:]), np.repeat(seeds, steps, axis=0))
    grads = grads.reshape((len(x), steps) + grads.shape[1:])
    layout = req.explainer.model.layout
    attr = _channels_first(x - base, layout) * np.einsum("s,ns...->n...", weights, grads)
    end, _ = req.explainer.forward(base.astype(np.float32))
    delta = ((req.scores.astype(np.float64) - end) * seeds).sum(axis=1)
    total = attr.reshape(len(x), -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        req.conservation[INPUT] = np.where(delta != 0, total / delta, np.nan)
    worst = np.nanmax(np.abs(req.conservation[INPUT] - 1), initial=0.0)
    req.notes.append(f"integrated gradients completeness: Σ attribution / (S(x) − S(baseline)) is "
                     f"{', '.join(f'{v:.4f}' for v in req.conservation[INPUT][:4])}"
                     f"{' ...' if len(x) > 4 else ''} (1 is exact; worst gap {worst:.2%}; more --steps "
                     f"narrows it)")
    return _finish(req, attr, magnitude=False)


def _gradient_shap(req: Request) -> dict[str, np.ndarray]:
    samples = _option(req, "samples", _positive_int)
    level = _option(req, "noise", _noise_level)
    rng = np.random.default_rng(_option(req, "seed", _seed))
    bases = np.stack([baseline(req, kind, rng) for kind in ("zero", "blur")], axis=1)
    seeds = _seeds(req)
    x = req.x.astype(np.float64)
    noisy = x[:, None] + _noise_sigma(x, level)[:, None] * rng.standard_normal((len(x), samples) + x.shape[1:])
    pick = rng.integers(0, bases.shape[1], (len(x), samples))
    b = np.take_along_axis(bases, pick.reshape(pick.shape + (1,) * (x.ndim - 1)), axis=1)
    alpha = rng.random((len(x), samples)).reshape((len(x), samples) + (1,) * (x.ndim - 1))
    points = b + alpha * (noisy - b)
    grads = _gradients(req, points.reshape((-1,) + x.shape[1:]), np.repeat(seeds, samples, axis=0))
    layout = req.explainer.model.layout
    diff = _channels_first((noisy - b).reshape((-1,) + x.shape[1:]), layout)
    attr = (diff * grads).reshape((len(x), samples) + grads.shape[1:]).mean(axis=1)
    return _finish(req, attr, magnitude=False)


_NOISE = ("samples", "noise", "seed")
register(Method("saliency", "Saliency (input gradient)", "Simonyan et al., Deep Inside Convolutional "
                "Networks, ICLR-W 2014", _saliency, own_run=True))
register(Method("inputxgradient", "Input × Gradient", "Shrikumar et al., Not Just a Black Box, 2016",
                _input_x_gradient, order="signed", own_run=True))
register(Method("smoothgrad", "SmoothGrad", "Smilkov et al., SmoothGrad: removing noise by adding "
                "noise, ICML-W 2017", _smoothgrad, options=_NOISE, own_run=True))
register(Method("vargrad", "VarGrad", "Adebayo et al., Local Explanation Methods for Deep Neural "
                "Networks Lack Sensitivity to Parameter Values, ICLR-W 2018", _vargrad, options=_NOISE,
                own_run=True))
register(Method("integrated-gradients", "Integrated Gradients", "Sundararajan et al., Axiomatic "
                "Attribution for Deep Networks, ICML 2017", _integrated_gradients, order="signed",
                options=("steps", "rule", "baseline", "seed"), own_run=True))
register(Method("gradientshap", "GradientSHAP", "Lundberg & Lee, A Unified Approach to Interpreting "
                "Model Predictions, NeurIPS 2017 (expected gradients, Captum's GradientShap)",
                _gradient_shap, order="signed", options=_NOISE, own_run=True))
