"""Perturbation maps from masked forwards only (no gradient): Occlusion and RISE.

Both multiply the image by masks at the input's size inside one graph (graph/masking.py with
eps=None: masks used as given), batched under the memory budget like Score-CAM's.

- `occlusion` (Zeiler & Fergus, ECCV 2014; Captum's `Occlusion`): a window of `window` pixels
  slides with `stride` over the image; each position is set to 0 in the model's input space (the
  normalized value Captum's default baseline gives) and the drop S(x) − S(x occluded) is credited
  to every pixel of the window; each pixel gets the mean over the windows covering it. Captum
  places windows only where they fit; here a last window is added flush with the right and bottom
  edges when the stride does not reach them, so no pixel is left without a value (Captum leaves
  NaN there). Where the stride tiles the image the two are identical.
- `rise` (Petsiuk et al., BMVC 2018): `masks` random binary grids of `grid`×`grid` cells kept
  with probability `keep` (p), upsampled bilinearly to (grid+1)·cell and cropped at a random shift to the
  input, as the paper's code does; map = Σ_i f(x ⊙ M_i) M_i / (masks · p), f = the softmax
  probability of the target class for class scores (the paper's), the raw score otherwise.
  Draws come from numpy's PCG64 with `seed`.
- `aise` (Adaptive Input Sampling for Explanation, OpenVINO XAI's AISEClassification): instead of
  random masks, a Gaussian mask (peak 1, width σ in units of the image side, centre (cx, cy) in
  [0, 1]²) is placed where SciPy's DIRECT optimizer (eps 0.1, not locally biased) asks, `iterations`
  times for each σ in (0.1, 0.175, 0.25) (their BALANCE preset), maximizing the gain
  f(x ⊙ M) − f(x ⊙ (1 − M)) (preservation minus deletion). The map is, per σ, Σ_i M_i · gain_i over
  the first `iterations` evaluated masks divided by its maximum (when positive), summed over σ,
  divided by the maximum (even a negative one: see aise_map) and min-max normalized (no ReLU), as
  OpenVINO XAI aggregates them. f is the class probability as for
  RISE (softmax; OpenVINO XAI applies a sigmoid to scores outside [0, 1]). Deterministic: DIRECT
  draws nothing at random. Each step's two masked images go through the masking graph in one run;
  the steps themselves are sequential (each depends on the last). SciPy is imported only here
  (the `aise` extra).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import OnnxCamError
from ..postprocess import softmax
from ..progress import Progress
from . import options as opt
from .base import Method, Request, register, scores_and_targets

INPUT = "input"
MASKS_PER_CALL = 64   # masks generated and sent at once: bounds the float32 masks held in memory
DEFAULTS = {"masks": 1000, "grid": 7, "keep": 0.5, "iterations": 50}
#: AISE's Gaussian widths (fractions of the image side) and DIRECT's eps: OpenVINO XAI's BALANCE preset.
AISE_WIDTHS = (0.1, 0.175, 0.25)
AISE_SOLVER_EPS = 0.1


def _image_hw(req: Request) -> tuple[int, int]:
    return tuple(req.explainer.model.image_shape[1:])


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins along one side: every stride, plus one flush with the end if needed."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _occlusion(req: Request) -> dict[str, np.ndarray]:
    h, w = _image_hw(req)
    window = opt.option(req, "window", max(1, min(h, w) // 8), opt.pixels(min(h, w)))
    stride = opt.option(req, "stride", max(1, window // 2), opt.pixels(min(h, w)))
    scores, targets = scores_and_targets(req)
    boxes = [(y, x) for y in window_starts(h, window, stride) for x in window_starts(w, window, stride)]
    out = np.zeros((len(req.x), h, w))
    for i in range(len(req.x)):
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for j in range(0, len(boxes), MASKS_PER_CALL):
            chunk = boxes[j:j + MASKS_PER_CALL]
            masks = np.ones((len(chunk), 1, h, w), np.float32)
            for k, (y, x) in enumerate(chunk):
                masks[k, 0, y:y + window, x:x + window] = 0.0
            s = req.explainer.masked_scores(req.x[i:i + 1], masks, align_corners=False, eps=None,
                                            what="Occlusion")
            drop = scores[i, targets[i]].astype(np.float64) - s[:, targets[i]]
            covered = 1.0 - masks[:, 0].astype(np.float64)
            total += np.einsum("m,mhw->hw", drop, covered)
            count += covered.sum(axis=0)
        out[i] = total / count
    return {INPUT: out.astype(np.float32)}


def rise_masks(rng: np.random.Generator, count: int, grid: int, p: float, hw: tuple[int, int]) -> np.ndarray:
    """RISE masks [count, 1, H, W] in [0, 1]: binary grid cells upsampled bilinearly, shifted."""
    h, w = hw
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    up_h, up_w = (grid + 1) * cell_h, (grid + 1) * cell_w
    cells = (rng.random((count, grid, grid)) < p).astype(np.float32)
    shifts = rng.integers(0, [cell_h, cell_w], size=(count, 2))
    out = np.empty((count, 1, h, w), np.float32)
    for k in range(count):
        big = cv2.resize(cells[k], (up_w, up_h), interpolation=cv2.INTER_LINEAR)
        dy, dx = shifts[k]
        out[k, 0] = big[dy:dy + h, dx:dx + w]
    return out


def _rise(req: Request) -> dict[str, np.ndarray]:
    count = opt.option(req, "masks", DEFAULTS["masks"], opt.count)
    grid = opt.option(req, "grid", DEFAULTS["grid"], opt.pixels(min(_image_hw(req))))
    p = opt.option(req, "keep", DEFAULTS["keep"], opt.probability)
    rng = np.random.default_rng(opt.option(req, "seed", 0, opt.seed))
    _, targets = scores_and_targets(req)
    probabilities = req.explainer.model.class_scores
    hw = _image_hw(req)
    out = np.zeros((len(req.x),) + hw)
    for j in range(0, count, MASKS_PER_CALL):
        masks = rise_masks(rng, min(MASKS_PER_CALL, count - j), grid, p, hw)
        for i in range(len(req.x)):
            s = req.explainer.masked_scores(req.x[i:i + 1], masks, align_corners=False, eps=None, what="RISE")
            f = softmax(s)[:, targets[i]] if probabilities else s[:, targets[i]]
            out[i] += np.einsum("m,mhw->hw", f.astype(np.float64), masks[:, 0].astype(np.float64))
    return {INPUT: (out / (count * p)).astype(np.float32)}


def gaussian_mask(center, width: float, hw: tuple[int, int]) -> np.ndarray:
    """[H, W] Gaussian of stdev `width` (fraction of the side) centred at center = (cx, cy) in
    [0, 1]² (pixel centres at linspace(0, 1)), scaled so its largest value is 1."""
    rows = np.linspace(0.0, 1.0, hw[0])[:, None]
    cols = np.linspace(0.0, 1.0, hw[1])[None, :]
    g = np.exp(-((cols - center[0]) ** 2 + (rows - center[1]) ** 2) / (2.0 * width ** 2))
    return np.clip(g / g.max(), 0.0, 1.0)


def aise_search(score, width: float, iterations: int, hw: tuple[int, int]) -> tuple[list, list]:
    """(centres, gains) of DIRECT maximizing score(mask) over Gaussian masks of one width, in the
    order evaluated (DIRECT may overrun its budget slightly: only the first `iterations` count,
    and it may stop short of it)."""
    try:
        from scipy.optimize import direct
    except ImportError:
        raise OnnxCamError("method aise needs SciPy's DIRECT optimizer (scipy >= 1.9); install it with "
                           "pip install 'onnxcam[aise]'") from None
    centres, gains = [], []

    def objective(args):
        if len(gains) >= iterations:   # DIRECT's overrun past maxfun: discarded, so not run
            return -gains[-1]
        centres.append((float(args[0]), float(args[1])))
        gains.append(float(score(gaussian_mask(args, width, hw))))
        return -gains[-1]
    direct(objective, [(0.0, 1.0), (0.0, 1.0)], eps=AISE_SOLVER_EPS, maxfun=iterations, locally_biased=False)
    return centres[:iterations], gains[:iterations]


def aise_map(searches: list, hw: tuple[int, int]) -> np.ndarray:
    """OpenVINO XAI's kernel density estimate: per width Σ_i M_i gain_i, divided by its maximum when
    positive; summed over widths and divided by the maximum, also when it is negative (as their code
    does). That division matters: where every gain is negative (a small preserved region rarely
    keeps the class) the sum is most negative where DIRECT sampled most, near its optimum, and
    dividing by the negative maximum makes that region the largest."""
    total = np.zeros(hw)
    for width, (centres, gains) in searches:
        acc = sum(gaussian_mask(c, width, hw) * g for c, g in zip(centres, gains))
        top = np.max(acc)
        total += acc / top if top > 0 else acc
    top = total.max()
    return total / top if top != 0 else total


def _aise(req: Request) -> dict[str, np.ndarray]:
    iterations = opt.option(req, "iterations", DEFAULTS["iterations"], opt.count)
    _, targets = scores_and_targets(req)
    ex, hw = req.explainer, _image_hw(req)
    probabilities = ex.model.class_scores
    out = np.zeros((len(req.x),) + hw)
    bar = Progress(len(req.x) * len(AISE_WIDTHS) * iterations, "AISE steps", enabled=ex.progress)
    for i in range(len(req.x)):
        def gain(mask):
            masks = np.stack([mask, 1.0 - mask])[:, None].astype(np.float32)
            s = ex.masked_scores(req.x[i:i + 1], masks, align_corners=False, eps=None, what="AISE",
                                 progress=False)
            f = softmax(s)[:, targets[i]] if probabilities else s[:, targets[i]]
            bar.update()
            return float(f[0]) - float(f[1])
        out[i] = aise_map([(w, aise_search(gain, w, iterations, hw)) for w in AISE_WIDTHS], hw)
    bar.close()
    return {INPUT: out.astype(np.float32)}


register(Method("occlusion", "Occlusion", "Zeiler & Fergus, Visualizing and Understanding Convolutional "
                "Networks, ECCV 2014 (Captum's Occlusion)", _occlusion, options=("window", "stride"),
                own_run=True))
register(Method("rise", "RISE", "Petsiuk et al., RISE: Randomized Input Sampling for Explanation of "
                "Black-box Models, BMVC 2018", _rise, options=("masks", "grid", "keep", "seed"), own_run=True))
register(Method("aise", "AISE", "Adaptive Input Sampling for Explanation of black-box models (OpenVINO "
                "XAI's AISEClassification): RISE with Gaussian masks placed by the DIRECT optimizer",
                _aise, order="minmax_resize", options=("iterations",), own_run=True))
