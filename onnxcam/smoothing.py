"""Smoothing that wraps any method: it explains modified copies of the input and combines the maps.

- `aug_smooth` (pytorch-grad-cam's): explain the image under six augmentations, map each heatmap
  back, and average. The augmentations are pytorch-grad-cam's: a horizontal flip or none, times
  the preprocessed input multiplied by 0.9, 1 or 1.1 (ttach's HorizontalFlip × Multiply). Each map
  (in [0, 1], at input resolution) is flipped back where the image was flipped; the result is their
  mean, not normalized again, as pytorch-grad-cam leaves it. One difference, on purpose: the class
  explained under every augmentation is the one chosen on the unaugmented image (the given target,
  else its top-1), where pytorch-grad-cam without targets takes each augmented image's own top-1;
  averaging maps of different classes would explain none of them.
- `smooth="grad"|"var"` (SmoothGrad, Smilkov et al. 2017; VarGrad, Adebayo et al. 2018, on any
  method, as Captum's NoiseTunnel wraps any attribution): `samples` noisy copies x + N(0, σ²) of
  each image, σ = `noise` × the image's value range, drawn exactly as the `smoothgrad` method draws
  them (attribution.sample_rng(seed, image, sample)), so `saliency` smoothed is `smoothgrad`. The
  copies go through the method's explain graph as one batch (the engine splits it under the memory
  budget); the raw maps (and pixel attributions) are averaged ("grad") or their variance taken
  ("var", E[a²] − E[a]² as NoiseTunnel computes it), then normalized as the method normalizes its
  own. The class is the one chosen on the unmodified image, as above.

Both are entered through `input_smoothing`, the one hook Explainer.explain calls.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import fusion, methods, postprocess
from .errors import OnnxCamError
from .methods import options as opt
from .methods.attribution import DEFAULTS as NOISE_DEFAULTS
from .methods.attribution import noise_sigma, sample_rng

FLIPS = (False, True)
FACTORS = (0.9, 1.0, 1.1)
#: smooth= kinds: the mean of the noisy copies' maps (SmoothGrad) or their variance (VarGrad).
NOISE_KINDS = ("grad", "var")
#: The options noise smoothing reads (seed is also passed on to a method that takes it).
NOISE_OPTIONS = ("smooth", "samples", "noise", "seed")
#: Largest number of noisy copies per explain call: bounds the copies and their maps held at once.
COPIES_PER_CALL = 64


def check_flag(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise OnnxCamError(f"option aug_smooth (--aug-smooth) must be True or False, got {value!r}")
    return bool(value)


def aug_smooth(explainer, x: np.ndarray, method: str, layers, target, **options):
    """The Result of explain(x, ...) with maps averaged over the six augmentations of x (a
    preprocessed batch); raw maps, scores and weights are those of the unaugmented run."""
    width_axis = 3 if explainer.model.layout == "NCHW" else 2
    if target is None and explainer.model.default_target is None:
        target = explainer.forward(x)[0].argmax(axis=1)
    plain = explainer.explain(x, method, layers, target, **options)
    total = {name: np.zeros_like(m, np.float64) for name, m in plain.maps.items()}
    for flip in FLIPS:
        for factor in FACTORS:
            if not flip and factor == 1.0:
                result = plain
            else:
                moved = np.ascontiguousarray(np.flip(x, width_axis) if flip else x) * np.float32(factor)
                result = explainer.explain(moved.astype(np.float32), method, layers, target, **options)
            for name, m in result.maps.items():
                total[name] += m[..., ::-1] if flip else m
    count = len(FLIPS) * len(FACTORS)
    maps = {name: (t / count).astype(np.float32) for name, t in total.items()}
    return replace(plain, maps=maps, variant=", ".join(filter(None, ["aug_smooth", plain.variant])), notes=plain.notes + [
        f"aug_smooth: mean of {count} maps (horizontal flip or none × input scaled by 0.9, 1, 1.1)"])


def input_smoothing(explainer, x, method: str, layers, target, color_order: str, fuse, options: dict):
    """The Result of a smoothed explain (aug_smooth=True, or smooth="grad"|"var"), else None.
    Pops the smoothing options from `options` (the explain call's own dict)."""
    if check_flag(options.pop("aug_smooth", False)):
        batch = explainer.check_input(_batch(explainer, x, color_order))
        return aug_smooth(explainer, batch, method, layers, target, fuse=fuse, **options)
    if options.get("smooth") is None:
        options.pop("smooth", None)
        return None
    batch = explainer.check_input(_batch(explainer, x, color_order))
    return noise_smooth(explainer, batch, method, layers, target, fuse, options)


def _batch(explainer, x, color_order):
    from .inputs import to_batch
    return to_batch(x, explainer.preprocess, color_order)[0]


class _Given:
    """What methods.options.option reads: the options as given."""
    def __init__(self, options: dict):
        self.options = options


def noise_options(method: str, options: dict) -> tuple[str, int, float, int]:
    """(kind, samples, noise, seed) popped from options and range-checked; refused on methods
    that draw noisy samples of their own (their --samples would mean two things)."""
    own = set(methods.get(method).options)
    if own & {"samples", "noise"}:
        raise OnnxCamError(f"method {method!r} already averages its own noisy samples (--samples); "
                           "use smooth (--smooth) with another method, e.g. saliency or gradcam")
    given = _Given(options)
    kind = opt.option(given, "smooth", None, opt.choice(NOISE_KINDS))
    samples = opt.option(given, "samples", NOISE_DEFAULTS["samples"], opt.count)
    level = opt.option(given, "noise", NOISE_DEFAULTS["noise"], opt.noise_level)
    seed = opt.option(given, "seed", NOISE_DEFAULTS["seed"], opt.seed)
    for name in ("smooth", "samples", "noise") + (() if "seed" in own else ("seed",)):
        options.pop(name, None)
    return kind, samples, level, seed


def noisy_copies(x: np.ndarray, images: range, samples, level: float, seed: int) -> np.ndarray:
    """[len(images) · len(samples), ...] float32: image i's copy s is x_i + σ_i · ε, ε from
    sample_rng(seed, i, s), image-major (copies of one image are consecutive). samples: a count
    or a range of sample indices."""
    x64 = x.astype(np.float64)
    sigma = noise_sigma(x64, level)
    samples = range(samples) if isinstance(samples, int) else samples
    return np.stack([x64[i] + sigma[i] * sample_rng(seed, i, s).standard_normal(x.shape[1:])
                     for i in images for s in samples]).astype(np.float32)


def _calls(images: int, samples: int) -> list[tuple[range, range]]:
    """(images, samples) of each explain call, at most COPIES_PER_CALL copies each: whole images
    grouped while their copies fit, else one image's copies split."""
    if samples <= COPIES_PER_CALL:
        step = COPIES_PER_CALL // samples
        return [(range(i, min(images, i + step)), range(samples)) for i in range(0, images, step)]
    return [(range(i, i + 1), range(s, min(samples, s + COPIES_PER_CALL)))
            for i in range(images) for s in range(0, samples, COPIES_PER_CALL)]


def _fixed_targets(explainer, x: np.ndarray, target):
    """(scores of x, the class explained per image [N], what each image's copies are given as
    target: int classes [N], class weights [N, K], or None where the model's target object names
    the column)."""
    scores, _ = explainer.forward(x)
    idx, seed = explainer.model.seed_for(target, len(x))
    if idx is None:
        idx = scores.argmax(axis=1)
        return scores, idx, idx
    if target is None:
        return scores, idx, None
    return scores, idx, seed if np.asarray(target).dtype.kind == "f" else idx


def noise_smooth(explainer, x: np.ndarray, method: str, layers, target, fuse, options: dict):
    """Explain `samples` noisy copies of each image of the preprocessed batch x in batches of up to
    COPIES_PER_CALL copies, and combine per image: mean ("grad") or variance ("var") of the raw maps
    and pixel attributions; maps normalized as the method's own."""
    kind, samples, level, seed = noise_options(method, options)
    spec = methods.get(method)
    how = fusion.fusion_rule(fuse, spec, explainer.model.resolve_layers(layers))
    scores, targets, per_image = _fixed_targets(explainer, x, target)
    sums: dict = {}    # (field, name) -> (Σ a, Σ a²) over each image's copies, float64
    first = None
    for images, draws in _calls(len(x), samples):
        copies = noisy_copies(x, images, draws, level, seed)
        copy_target = None if per_image is None else np.repeat(per_image[images.start:images.stop], len(draws), axis=0)
        result = explainer.explain(copies, method, layers, copy_target, **options)
        first = first or result
        for field in ("raw", "pixels"):
            for name, arr in getattr(result, field).items():
                a = arr.astype(np.float64).reshape((len(images), len(draws)) + arr.shape[1:])
                if (field, name) not in sums:
                    sums[field, name] = (np.zeros((len(x),) + arr.shape[1:]), np.zeros((len(x),) + arr.shape[1:]))
                total, squares = sums[field, name]
                total[images.start:images.stop] += a.sum(axis=1)
                squares[images.start:images.stop] += (a * a).sum(axis=1)
    combined = {"raw": {}, "pixels": {}}
    for (field, name), (total, squares) in sums.items():
        mean = total / samples
        combined[field][name] = (mean if kind == "grad" else squares / samples - mean ** 2).astype(np.float32)
    size = explainer.model.image_shape[1:]
    maps = {name: postprocess.normalize(r, size, spec.order) for name, r in combined["raw"].items()}
    result = replace(first, maps=maps, raw=combined["raw"], pixels=combined["pixels"], logits=scores,
                     target=targets, weights={}, near_kinks={}, conservation={},
                     variant=f"{'SmoothGrad' if kind == 'grad' else 'VarGrad'}, {samples} noisy copies",
                     notes=list(explainer.model.notes) + [
                         f"smooth={kind}: {'mean' if kind == 'grad' else 'variance'} of the raw maps of "
                         f"{samples} noisy copies per image (σ = {level:g} × the image's value range, "
                         f"seed {seed})"])
    return fusion.add_fused(result, how, spec.order, size)
