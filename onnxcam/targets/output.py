"""Output: any named output, flattened to S [N, M] (M = the product of its non-batch dims);
`index` is the flat index of the element explained when explain names none. For heads that
are neither classifiers nor dense maps (a regression value, one pixel of a keypoint map). The
auto layer of a 4-D output is chosen as for Segment."""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError
from .base import Target, check_class, coarsest_features, static_dims


class Output(Target):
    class_scores = False   # no probability to show

    def __init__(self, name: str | None = None, index: int | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise OnnxCamError(f"Output name must be an output name (str) or None, got {type(name).__name__}")
        self.output = name
        self.cls = check_class(index, "index")
        self._dense = None

    def auto_layer(self, proto, layers):
        """A dense [N, C, H, W] output: the segmenters' choice; anything else: the classifiers'."""
        return coarsest_features(layers, self._dense) if self._dense else super().auto_layer(proto, layers)

    def score(self, b, name, shape):
        size = int(np.prod(static_dims(shape, f"output {name!r}")))
        if self.cls is not None and self.cls >= size:
            raise OnnxCamError(f"index {self.cls} is out of range: output {name!r} of shape "
                               f"{tuple(shape)} has {size} elements per image (0..{size - 1})")
        self._dense = shape[1] if len(shape) == 4 else None
        return name if len(shape) == 2 else b.op("Flatten", [name], hint="target_flat", axis=1)
