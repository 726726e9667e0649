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
baselines given, α ~ U(0, 1); attribution (x̃ − b)·∇S(b + α(x̃ − b)) averaged). The draws of image
i's sample s come from numpy's `default_rng([seed, i, s])` (sample_rng), so a run is reproducible
and does not depend on how points are batched; noise σ is `noise` times the range (max − min) of
each image's preprocessed values, as SmoothGrad's paper sets it.

The class explained at every point is the one chosen on the unmodified image (top-1 unless a
target is given): a path point's own top-1 would explain a different score at each step.

Integrated Gradients reports completeness (Sundararajan et al.'s axiom Σ attr = S(x) − S(b)) as
the fraction Σ attr / (S(x) − S(b)) per image in `Result.conservation["input"]` and a note; the
gap shrinks with more steps except where the path crosses kinks the quadrature misses.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import OnnxCamError
from . import options as opt
from .base import Method, Request, register

INPUT = "input"
RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
BASELINES = ("zero", "black", "blur", "noise")
DEFAULTS = {"steps": 32, "samples": 16, "noise": 0.15, "seed": 0, "rule": "gausslegendre", "baseline": "zero"}
#: Largest number of modified images per gradient call: bounds the float32 gradients held at once
#: (the engine itself splits each call into batches under the memory budget).
POINTS_PER_CALL = 32
GRADIENTSHAP_BASELINES = ("zero", "blur")


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


def channels_first(arr: np.ndarray, layout: str) -> np.ndarray:
    return arr.transpose(0, 3, 1, 2) if layout == "NHWC" else arr


def class_seeds(req: Request) -> np.ndarray:
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


def _per_sample(req: Request, seeds: np.ndarray, samples: int, point, reduce) -> None:
    """For each image i and sample s: the gradient at point(i, s) (model layout) handed to
    reduce(i, s, grad [C, H, W]). Points are made and sent POINTS_PER_CALL at a time, so memory
    does not grow with the number of samples."""
    for i in range(len(req.x)):
        for start in range(0, samples, POINTS_PER_CALL):
            chunk = range(start, min(samples, start + POINTS_PER_CALL))
            grads = _gradients(req, np.stack([point(i, s) for s in chunk]), np.repeat(seeds[i:i + 1], len(chunk), 0))
            for s, g in zip(chunk, grads):
                reduce(i, s, g)


def sample_rng(seed: int, image: int, sample: int) -> np.random.Generator:
    """The generator of one image's one sample: draws do not depend on how points are batched."""
    return np.random.default_rng([seed, image, sample])


def baseline(req: Request, kind: str, seed: int = 0) -> np.ndarray:
    """The baseline batch in the model's input space: zero (Captum's default), black (a black photo
    preprocessed), blur (each image blurred with σ = 1/10 of its larger side, Sturmfels et al.'s
    'blurred' baseline), noise (uniform in each image's value range, image i's drawn from
    default_rng([seed, i]))."""
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
        draws = np.stack([np.random.default_rng([seed, i]).random(x.shape[1:]) for i in range(len(x))])
        return lo + (hi - lo) * draws
    layout = req.explainer.model.layout
    hwc = x if layout == "NHWC" else x.transpose(0, 2, 3, 1)
    sigma = max(hwc.shape[1:3]) / 10
    blurred = np.stack([cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape) for img in hwc])
    return blurred if layout == "NHWC" else blurred.transpose(0, 3, 1, 2)


def noise_sigma(x: np.ndarray, level: float) -> np.ndarray:
    """Noise stdev per image [N, 1, ...]: `level` times the range (max − min) of its values."""
    axes = tuple(range(1, x.ndim))
    return level * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))


def _noisy_gradients(req: Request, reduce) -> int:
    """reduce(i, s, gradient) at each of `samples` noisy copies x + N(0, σ²) of each image;
    returns `samples`."""
    samples = opt.option(req, "samples", DEFAULTS["samples"], opt.count)
    level = opt.option(req, "noise", DEFAULTS["noise"], opt.noise_level)
    seed = opt.option(req, "seed", DEFAULTS["seed"], opt.seed)
    seeds = class_seeds(req)
    x = req.x.astype(np.float64)
    sigma = noise_sigma(x, level)

    def noisy(i, s):
        return x[i] + sigma[i] * sample_rng(seed, i, s).standard_normal(x.shape[1:])
    _per_sample(req, seeds, samples, noisy, reduce)
    return samples


def pixel_result(req: Request, attr: np.ndarray, magnitude: bool) -> dict[str, np.ndarray]:
    req.pixels[INPUT] = attr.astype(np.float32)
    return {INPUT: (np.abs(attr) if magnitude else attr).sum(axis=1).astype(np.float32)}


def _saliency(req: Request) -> dict[str, np.ndarray]:
    seeds = class_seeds(req)
    return pixel_result(req, np.abs(_gradients(req, req.x, seeds)), magnitude=True)


def _input_x_gradient(req: Request) -> dict[str, np.ndarray]:
    seeds = class_seeds(req)
    layout = req.explainer.model.layout
    return pixel_result(req, channels_first(req.x.astype(np.float64), layout) * _gradients(req, req.x, seeds), False)


def _moments(req: Request) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over the noisy samples of |∇S| per image (Captum's NoiseTunnel over
    Saliency(abs=True)), accumulated one sample at a time."""
    total = sq = None

    def add(i, s, g):
        nonlocal total, sq
        if total is None:
            total, sq = np.zeros((len(req.x),) + g.shape), np.zeros((len(req.x),) + g.shape)
        total[i] += np.abs(g)
        sq[i] += g * g
    samples = _noisy_gradients(req, add)
    mean = total / samples
    return mean, np.maximum(sq / samples - mean ** 2, 0.0)


def _smoothgrad(req: Request) -> dict[str, np.ndarray]:
    return pixel_result(req, _moments(req)[0], magnitude=True)


def _vargrad(req: Request) -> dict[str, np.ndarray]:
    return pixel_result(req, _moments(req)[1], magnitude=True)


def _integrated_gradients(req: Request) -> dict[str, np.ndarray]:
    steps = opt.option(req, "steps", DEFAULTS["steps"], opt.count)
    alphas, weights = path_nodes(steps, opt.option(req, "rule", DEFAULTS["rule"], opt.choice(RULES)))
    seed = opt.option(req, "seed", DEFAULTS["seed"], opt.seed)
    base = baseline(req, opt.option(req, "baseline", DEFAULTS["baseline"], opt.choice(BASELINES)), seed)
    seeds = class_seeds(req)
    x = req.x.astype(np.float64)
    layout = req.explainer.model.layout
    summed = np.zeros(channels_first(x, layout).shape)

    def add(i, s, g):
        summed[i] += weights[s] * g
    _per_sample(req, seeds, steps, lambda i, s: base[i] + alphas[s] * (x[i] - base[i]), add)
    attr = channels_first(x - base, layout) * summed
    end, _ = req.explainer.forward(base.astype(np.float32))
    completeness(req, attr, req.scores, end, seeds, "integrated gradients", "more --steps narrows it")
    return pixel_result(req, attr, magnitude=False)


def completeness(req: Request, attr: np.ndarray, scores: np.ndarray, at_baseline: np.ndarray,
                 seeds: np.ndarray, method: str, hint: str) -> None:
    """Completeness of an attribution [N, C, H, W] relative to its baseline (Sundararajan et al.'s
    axiom, DeepLIFT's summation-to-delta): Σ attr / (S(x) − S(baseline)) per image in
    req.conservation["input"] (NaN where S did not change) and a note with the worst gap."""
    delta = ((scores.astype(np.float64) - at_baseline) * seeds).sum(axis=1)
    total = attr.reshape(len(attr), -1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        req.conservation[INPUT] = np.where(delta != 0, total / delta, np.nan)
    worst = np.nanmax(np.abs(req.conservation[INPUT] - 1), initial=0.0)
    req.notes.append(f"{method} completeness: Σ attribution / (S(x) − S(baseline)) is "
                     f"{', '.join(f'{v:.4f}' for v in req.conservation[INPUT][:4])}"
                     f"{' ...' if len(attr) > 4 else ''} (1 is exact; worst gap {worst:.2%}; {hint})")


def _gradient_shap(req: Request) -> dict[str, np.ndarray]:
    """Per sample: noise ε, baseline b (zero or blur, one picked at random), α ~ U(0, 1) from the
    sample's generator in that order; attribution (x + ε − b)·∇S(b + α(x + ε − b)), averaged."""
    samples = opt.option(req, "samples", DEFAULTS["samples"], opt.count)
    level = opt.option(req, "noise", DEFAULTS["noise"], opt.noise_level)
    seed = opt.option(req, "seed", DEFAULTS["seed"], opt.seed)
    bases = [baseline(req, kind) for kind in GRADIENTSHAP_BASELINES]
    seeds = class_seeds(req)
    x = req.x.astype(np.float64)
    sigma = noise_sigma(x, level)
    layout = req.explainer.model.layout
    draws = {}

    def point(i, s):
        rng = sample_rng(seed, i, s)
        noisy = x[i] + sigma[i] * rng.standard_normal(x.shape[1:])
        b = bases[rng.integers(len(bases))][i]
        draws[i, s] = noisy - b
        return b + rng.random() * (noisy - b)
    attr = np.zeros(channels_first(x, layout).shape)

    def add(i, s, g):
        attr[i] += channels_first(draws.pop((i, s))[None], layout)[0] * g / samples
    _per_sample(req, seeds, samples, point, add)
    return pixel_result(req, attr, magnitude=False)


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
