"""Segment: S_k = Σ over a pixel region of class k's logits, from a dense [N, K, H, W] output.

The region is a given mask [H, W] (nonzero = in; one mask for every image, baked as a constant;
at the input's size when the output is smaller, resized nearest-neighbour); or, with
`threshold=t`, where the output as exported exceeds t (a probability when the model ends in a
Sigmoid: rapidocr's text detector keeps pixels with probability > 0.3); or else where class k is
each image's argmax (ArgMax/Equal/Cast in the graph). A one-channel output (a binary or text
segmenter) has no argmax to speak of (it is class 0 everywhere), so its default region is the
model's own binary decision: probability > 0.5 when the output comes from a Sigmoid; a
one-channel output without a Sigmoid needs a threshold or a mask. Every region is constant to
the gradient (Greater/ArgMax give bools): with a mask S_k equals pytorch-grad-cam's
SemanticSegmentationTarget(k, mask); without one it equals that target with the mask
pytorch-grad-cam's tutorial builds, (argmax == k), here recomputed per image in the same run.
`cls` is the class explained when explain names none (else the class with the largest S_k).

What is summed: when the output comes from a final Sigmoid/Softmax (base.final_activation) and
intake explains logits (score="logits", the default), its input, the logits, as for classifiers
(a probability saturates: its gradient vanishes where the model is sure); with score="output"
the output itself. torchvision segmenters end in raw logits, which are summed as exported.

Auto layer (base.coarsest_features): the last layer at the network's coarsest resolution (the
smallest h·w) that is not a K-channel class-score map: the last feature map before the upsampling
head (FCN: the head's 512-channel features; LRASPP: its /16 branch after the attention multiply;
DeepLabV3: the features after ASPP). The classifier rule (the tensor feeding a global pool) does
not apply: the region sum is itself a reduction over space.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnx

from ..errors import OnnxCamError, describe
from .base import Target, check_class, check_output_name, coarsest_features, final_activation, static_dims


class Segment(Target):
    class_scores = False   # no probability to show

    pre_activation = True  # sums the logits before a final Sigmoid/Softmax (score="logits")

    def __init__(self, cls: int | None = None, mask=None, output: str | None = None,
                 threshold: float | None = None) -> None:
        self.cls = check_class(cls)
        self.output = check_output_name(output)
        self.mask = None if mask is None else _check_mask(mask)
        self.threshold = _check_threshold(threshold)
        if self.mask is not None and self.threshold is not None:
            raise OnnxCamError("give Segment a mask or a threshold, not both: each defines the region")
        self._classes, self._size = None, None
        self._summed = None   # what score() summed, for the notes: "logits before the Sigmoid" / "the output"

    def __repr__(self) -> str:
        if self.mask is not None:
            region = f"mask {self.mask.shape} ({int(self.mask.sum())} px)"
        elif self.threshold is not None:
            region = f"region output > {self.threshold:g}"
        else:
            region = "argmax region"
        summed = f", summing {self._summed}" if self._summed else ""
        return f"Segment(cls={self.cls}, {region}, output={self.output}{summed})"

    def score(self, b, name, shape, logits: bool = True):
        if len(shape) != 4:
            raise OnnxCamError(f"Segment needs a dense [N, K, H, W] output; output {name!r} has shape "
                               f"{tuple(shape)} (choose the output with output=... / --output NAME)")
        k, h, w = static_dims(shape, f"output {name!r}")
        if self.cls is not None and self.cls >= k:
            raise OnnxCamError(f"class {self.cls} is out of range: output {name!r} has {k} classes (0..{k - 1})")
        self._classes, self._size = k, (h, w)   # the region outline (targets/from_args) reads them
        activation = final_activation(b.model, name)
        summed = activation[0] if logits and activation else name
        self._summed = f"the input of the final {activation[1]}" if summed != name else "the output"
        return b.reduce("ReduceSum", b.op("Mul", [summed, self._region(b, name, k, h, w, activation)],
                                          hint="target_masked"), [2, 3], keepdims=0, hint="target_sum")

    def _region(self, b, name, k, h, w, activation) -> str:
        """The float 0/1 region [1 or N, K or 1, H, W], computed from the output as exported."""
        if self.mask is not None:
            return b.const(_fit(self.mask, h, w, name)[None, None], "target_mask")
        threshold = self.threshold
        if threshold is None and k == 1:
            if activation is None or activation[1] != "Sigmoid":
                raise OnnxCamError(f"output {name!r} has one channel and no final Sigmoid, so it has no "
                                   "predicted region to explain: give threshold=T (--threshold T) on its "
                                   "values or a mask (--mask PNG)")
            threshold = 0.5   # a one-channel sigmoid map's own decision (argmax of one channel is everywhere)
        if threshold is not None:
            inside = b.op("Greater", [name, b.const(np.float32(threshold), "target_threshold")])
        else:
            top = b.op("ArgMax", [name], hint="target_argmax", axis=1, keepdims=1)
            inside = b.op("Equal", [top, b.const(np.arange(k, dtype=np.int64).reshape(1, k, 1, 1), "classes")])
        return b.op("Cast", [inside], hint="target_region", to=onnx.TensorProto.FLOAT)

    def auto_layer(self, proto, layers):
        return coarsest_features(layers, self._classes)


def _fit(mask: np.ndarray, h: int, w: int, name: str) -> np.ndarray:
    """The mask as float32 at the output's size: a mask at the input's size (outputs at a fraction
    of it, as some segmenters give) is resized nearest-neighbour; the aspect ratio must agree."""
    mh, mw = mask.shape
    if (mh, mw) != (h, w):
        if abs(mh * w - mw * h) > max(mh, mw, h, w):
            raise OnnxCamError(f"the mask is {mh}x{mw} but output {name!r} is {h}x{w}; give a mask of the "
                               "model input's or output's size")
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) != 0
        if not mask.any():
            raise OnnxCamError(f"the mask has no pixel left at the output's {h}x{w}; give a larger region")
    return mask.astype(np.float32)


def _check_threshold(threshold) -> float | None:
    """None or a finite real number (bools refused)."""
    if threshold is None:
        return None
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not np.isfinite(threshold):
        raise OnnxCamError(f"threshold must be a finite number (a probability such as 0.3 for a "
                           f"sigmoid output) or None, got {describe(threshold)}")
    return float(threshold)


def _check_mask(mask) -> np.ndarray:
    try:
        arr = np.asarray(mask)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise OnnxCamError(f"mask must be a 2-D array [H, W] of numbers or bools, got {describe(mask)}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise OnnxCamError("mask contains NaN or infinite values")
    if not np.any(arr):
        raise OnnxCamError("mask is empty (no nonzero pixel): the region to explain must hold at least one pixel")
    return arr != 0
