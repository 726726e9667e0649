"""Embed: S = cosine similarity between each image's embedding (an [N, D] output) and a reference.

The reference [D] (another image's embedding, or a concept vector: the mean embedding of a few
examples, as pytorch-grad-cam's SimilarityToConceptTarget) is normalized and baked into the graph
as a constant; S = (e · r̂) / sqrt(e · e + 1e-12), K' = 1. Compute a reference image's embedding
with an Explainer whose target is Output(name) (S is then the embedding itself): one forward.
"""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError, describe
from .base import Target, check_output_name, static_dims


class Embed(Target):
    class_scores = False   # no probability to show

    def __init__(self, reference, output: str | None = None) -> None:
        try:
            ref = np.asarray(reference, np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise OnnxCamError(f"reference must be a vector [D] of numbers, got {describe(reference)}") from None
        if np.asarray(reference).ndim not in (1, 2) or (np.asarray(reference).ndim == 2
                                                        and np.asarray(reference).shape[0] != 1):
            raise OnnxCamError(f"reference must be one vector [D] (or [1, D]), got shape {np.asarray(reference).shape}")
        if not np.all(np.isfinite(ref)):
            raise OnnxCamError("reference contains NaN or infinite values")
        norm = np.linalg.norm(ref)
        if norm == 0:
            raise OnnxCamError("reference is the zero vector: cosine similarity to it is undefined")
        self.reference = (ref / norm).astype(np.float32)
        self.output = check_output_name(output)
        self.cls = 0

    def __repr__(self) -> str:
        return f"Embed(reference [{self.reference.size}], output={self.output})"

    def score(self, b, name, shape):
        dims = static_dims(shape, f"output {name!r}")
        if len(dims) != 1 and any(d != 1 for d in dims[1:]):
            raise OnnxCamError(f"Embed needs an [N, D] embedding output; output {name!r} has shape {tuple(shape)}")
        if dims[0] != self.reference.size:
            raise OnnxCamError(f"the reference has {self.reference.size} values but output {name!r} "
                               f"embeds in {dims[0]}; compute the reference with the same model")
        e = b.op("Flatten", [name], hint="embedding", axis=1) if len(dims) > 1 else name
        dot = b.reduce("ReduceSum", b.op("Mul", [e, b.const(self.reference[None], "reference")]), [1],
                       keepdims=1, hint="dot")
        sq = b.reduce("ReduceSum", b.op("Mul", [e, e]), [1], keepdims=1, hint="squared_norm")
        norm = b.op("Sqrt", [b.op("Add", [sq, b.const(np.float32(1e-12), "eps")])], hint="norm")
        return b.op("Div", [dot, norm], hint="cosine")
