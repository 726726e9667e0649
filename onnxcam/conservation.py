"""How much of LRP's start relevance reaches the pixels, and where the rest goes.

LRP's rules conserve relevance from layer to layer (Σ_in R = Σ_out R) only when no bias and no
stabilizer takes a share: the z⁺ rule puts b⁺ in its denominator, the ε-rule adds ε·sign(z) to
it, and each of those absorbs the part of R the inputs did not earn. On a network with large
(BatchNorm-folded) biases the input may keep well under 1% of the start, and a map scaled to the
few pixels that kept some shows next to nothing without saying why. So relevance methods report,
per image, the conserved fraction Σ R / start at the input and at a few layers along the graph,
and a warning naming the stretch of the graph that lost (or created) the most.

The layers measured are *cuts* of the graph: tensors every path from the input to the score
passes through (a block output in a residual network, not a tensor inside a block, which the
shortcut bypasses), so Σ R over one of them is all the relevance still in play at that depth.
They cost little: the relevance graph computes them anyway on its way to the input; the run only
returns them as well.

With a target object (targets/) the start is the target's column of S, and the fractions are
taken against it unchanged: Segment's S_k = Σ region ⊙ y_k reaches the dense logits whole (ReduceSum
takes the z-rule, the constant region passes relevance, so pixels outside it get none); Embed's
cosine e·r̂ / |e| reaches the embedding whole too, because the Div rule gives all relevance to the
numerator: LRP treats 1/|e| as a constant factor (the cosine is not linear in e; its share of a
dimension j is S·e_j r̂_j / (e·r̂), the linear score's with the norm frozen at this image), and the
|e| branch gets none. tests/test_tasks_cli.py checks both.
"""
from __future__ import annotations

import numpy as np

from .graph.backward import _live_tensors, _path
from .graph.expose import elem_types

CHECKPOINTS = 5
# Below half, the pixel map shows less than half of what the score rests on: the rest went to
# biases/stabilizers, and the map is a picture of what they left. Above 2, the rules created
# relevance. Between, the map is a fair account: a factor of 2 either way, not a tighter band,
# as z⁺ with small biases loses a few % per layer and the warning is for maps that mislead, not
# for every leak.
LOW, HIGH = 0.5, 2.0
# Σ|R| / |start| above 10: relevance of both signs was created (ε-rule on near-zero denominators,
# α-β with large β) and cancels. With Σ|R| = A·|S|, the smaller sign holds at least (A - 1)/2·|S|,
# so at least (A - 1)/A of what the map draws cancels out: 90% at A = 10. Mixed signs at the
# pixels are normal below that (LRP-0 on a bias-free net conserves Σ R exactly with A ≈ 2.6).
MAGNITUDE_HIGH = 10.0


def cut_layers(model, count: int = CHECKPOINTS) -> list[str]:
    """Up to `count` catalog layers that cut the graph between input and score, evenly spaced
    over the cuts and always including the one nearest the score (model: an intake Model)."""
    proto = model.proto
    live = _live_tensors(proto, [model.input_name], elem_types(proto))
    nodes = list(reversed(_path(proto, model.score_name, live)))   # topological order
    produced = {model.input_name: -1}
    last_use = {model.input_name: -1, model.score_name: len(nodes)}
    for k, node in enumerate(nodes):
        for name in node.input:
            if name in live:
                last_use[name] = max(last_use.get(name, -1), k)
        for name in node.output:
            if name in live:
                produced[name] = k
    # open_after[k + 1]: live tensors produced at or before node k (the input: k = -1) and read after it
    diff = np.zeros(len(nodes) + 2, np.int64)
    for name, k in produced.items():
        end = last_use.get(name, k)
        if end > k:
            diff[k + 1] += 1
            diff[end + 1] -= 1
    open_after = np.cumsum(diff)
    catalog = {layer.name for layer in model.layers}
    cuts = [name for name, k in sorted(produced.items(), key=lambda item: item[1])
            if name in catalog and k >= 0 and open_after[k + 1] == 1 and last_use.get(name, k) > k]
    if len(cuts) <= count:
        return cuts
    picks = np.linspace(0, len(cuts) - 1, count).round().astype(int)
    return [cuts[i] for i in sorted(set(picks))]


def start_total(start: str, scores: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Σ over classes of the start relevance [N] (backward.py's starts): "logit" seed ⊙ scores
    (the target's logit for a one-hot seed), "onehot" the seed, "contrastive" seed·(1 + 1/K) - 1/K."""
    seed, scores = np.asarray(seed, np.float64), np.asarray(scores, np.float64)
    if start == "logit":
        return (seed * scores).sum(axis=1)
    if start == "onehot":
        return seed.sum(axis=1)
    k = seed.shape[1]
    return (seed * (1 + 1 / k) - 1 / k).sum(axis=1)


def fractions(relevances: dict[str, np.ndarray], total: np.ndarray) -> dict[str, np.ndarray]:
    """{layer: Σ R / start per image [N]} in float64 (NaN where the start is 0: no fraction)."""
    total = np.asarray(total, np.float64)
    out = {}
    for name, r in relevances.items():
        kept = r.reshape(len(r), -1).astype(np.float64).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(total != 0, kept / np.where(total != 0, total, 1.0), np.nan)
    return out


def _medians(kept: dict[str, np.ndarray], order: list[str]) -> list[float]:
    """[1.0 (the start)] + the median over images at each layer of `order` (NaN if none finite)."""
    return [1.0] + [float(np.nanmedian(kept[k])) if np.isfinite(kept[k]).any() else np.nan for k in order]


def _stretch(values: list[float], order: list[str], pick) -> str:
    """The stretch between two neighbouring checkpoints whose ratio `pick` (min or max) selects."""
    steps = ["the score"] + order
    ratios = [(b / a, f"between {x} and {y} (x{b / a:.3g})")
              for a, b, x, y in zip(values, values[1:], steps, steps[1:])
              if a != 0 and np.isfinite(a) and np.isfinite(b)]
    return pick(ratios, key=lambda item: item[0])[1] if ratios else "somewhere unmeasured"


def notes(method: str, composite: str, kept: dict[str, np.ndarray], magnitude: dict[str, np.ndarray],
          order: list[str]) -> list[str]:
    """One note: Σ R / start at each checkpoint from the score down to the input (medians over
    images, the input's range over images), and a warning when the input keeps less than LOW of
    the start, or holds more than HIGH times it, or MAGNITUDE_HIGH times it in magnitude
    (`magnitude`: Σ|R| / |start|; the ε-rule can keep Σ R near the start while creating large
    relevance of both signs that cancels). The warning names the stretch between two checkpoints that lost most (signed
    fractions) or created most (magnitudes)."""
    signed, absolute = _medians(kept, order), _medians(magnitude, order)
    inp = kept[order[-1]][np.isfinite(kept[order[-1]])]
    if inp.size == 0:
        return [f"{method} ({composite}): the start relevance is 0, so no conserved fraction"]
    spread = f" (images {inp.min():.3g} to {inp.max():.3g})" if inp.size > 1 else ""
    path = " -> ".join(f"{name} {v:.3g}" for name, v in zip(order, signed[1:]))
    line = f"{method} ({composite}): relevance kept, Σ R / start: {path}{spread}"
    m, a = signed[-1], absolute[-1]
    # creation first: the ε-rule can lose signed relevance while creating much more of both signs
    if m > HIGH or a > MAGNITUDE_HIGH:
        return [f"{line}. WARNING: the input's relevance is {a:.3g} times the start in magnitude (Σ|R| / "
                f"|start|) for {m:.3g} signed: the rules create relevance of both signs (stabilizers on "
                f"near-zero denominators, large β), most {_stretch(absolute, order, max)}; it cancels, "
                "and the map shows that noise"]
    if m < LOW:
        return [f"{line}. WARNING: only {m:.3g} of the start relevance reaches the input: the rules' bias "
                f"terms and stabilizers absorb the rest, most of it {_stretch(signed, order, min)}; the map "
                "shows only what they left (its colours are scaled to it)"]
    return [line]
