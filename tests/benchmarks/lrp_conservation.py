"""How much of LRP's start relevance (the target's logit) each composite keeps on the bundled model,
quoted in README: Σ R / start at the cuts of the graph that `onnxcam.conservation` reads (from the
head down to the input) on the two photos with one clear ImageNet object (chelsea / coffee), the
magnitude Σ|R| / |start| at the input, and which warning the note gives.

    python tests/benchmarks/lrp_conservation.py
"""
from __future__ import annotations

import numpy as np

from benchtools import PHOTOS, print_table

import onnxcam  # noqa: E402
from onnxcam import bundled  # noqa: E402
from onnxcam.graph.rules.lrp import COMPOSITES  # noqa: E402


def main() -> None:
    ex = onnxcam.Explainer(bundled.MODEL)
    photos = [p for p in PHOTOS if p.stem in ("chelsea", "coffee")]
    x = onnxcam.load_images(photos, ex.preprocess)
    rows, header = [], None
    for composite in COMPOSITES:
        res = ex.explain(x, method="lrp", composite=composite)
        kept = res.conservation
        if header is None:
            header = ["composite"] + [k if k == "input" else k.split("/")[1] for k in kept] + \
                     ["Σ abs(R) / start at input", "warning"]
        start = np.abs(res.logits[np.arange(len(x)), res.target])
        magnitude = np.abs(res.pixels["input"]).sum(axis=(1, 2, 3)) / start
        note = next(n for n in res.notes if n.startswith(f"lrp ({composite})"))
        warning = ("created" if "create relevance" in note else "lost") if "WARNING" in note else "-"
        rows.append([composite] + [" / ".join(f"{v:.3g}" for v in k) for k in kept.values()]
                    + [" / ".join(f"{v:.3g}" for v in magnitude), warning])
    print_table(f"Σ R / start (target logit), {' / '.join(p.name for p in photos)}", header, rows)


if __name__ == "__main__":
    main()
