"""Layer fusion: one map from the maps of several layers explained by one method in one call.

Multi-scale models (FPN necks, YOLO heads at three strides, the PP-OCR detector's four branches)
spread the evidence for one score over layers of different resolutions; each layer's map shows
only its own share. Fusion combines them. Each layer's map is first normalized as the method
normalizes it, at input resolution, but without the last min-max after the upsampling (a peak
that bilinear upsampling flattens stays lower, as in pytorch-grad-cam); the layers' own maps
(`Result.maps[layer]`) are kept, and the combination is added as the map "fused". Two published
recipes, named:

- "mean" (default): the per-layer maps averaged, then min-max. This is pytorch-grad-cam's
  multi-layer aggregation (`compute_cam_per_layer`: ReLU, min-max, resize per layer;
  `aggregate_multi_layers`: mean, min-max), which the ultralytics-based YOLO-CAM repositories
  use unchanged; onnxcam's fused Grad-CAM / HiResCAM equal pytorch-grad-cam's with several
  target layers (tests/test_targets_parity.py).
- "max": LayerCAM's hierarchical fusion (Jiang et al., IEEE TIP 2021, Eq. 9, as TorchCAM's
  `LayerCAM.fuse_cams` implements it): each map scaled by tanh(2 · map), which lifts the weak
  maps of shallow layers, then the element-wise maximum; min-max for display.

The fused raw map (`Result.raw["fused"]`) is the combination before the last min-max, at input
resolution (the per-layer raw maps are at feature resolution). Signed relevance maps (LRP) are
not fused: their 0.5 is "no evidence", and a mean or max of them would mix signs.
"""
from __future__ import annotations

import numpy as np

from .errors import OnnxCamError, describe
from .postprocess import minmax, normalize

#: The key of the fused map in Result.maps / Result.raw.
FUSED = "fused"
HOWS = ("mean", "max")
LAYERCAM_GAMMA = 2.0   # LayerCAM's tanh scale (the paper's and TorchCAM's value)


def fusion_rule(fuse, method, layers) -> str | None:
    """The fusion asked for (None: none), checked before anything runs. fuse: False/None, True
    ("mean"), "mean" or "max"; method: the methods.Method; layers: the resolved LayerInfos."""
    if fuse is None or fuse is False:
        return None
    how = "mean" if fuse is True else fuse
    if not isinstance(how, str) or how not in HOWS:
        raise OnnxCamError(f"fuse must be True, False, 'mean' or 'max', got {describe(fuse)}")
    if method.signed:
        raise OnnxCamError(f"{method.name} gives signed relevance, which fusion cannot combine; fuse "
                           "Grad-CAM-family, Score-CAM or Relevance-CAM maps")
    if len(layers) < 2:
        raise OnnxCamError("fuse needs at least two layers: give layers=[...] (--layer A B ...)")
    if any(layer.name == FUSED for layer in layers):
        raise OnnxCamError(f"the model has a layer named {FUSED!r}, which the fused map would replace; "
                           "explain without fuse and combine the maps with onnxcam.fusion.fuse_maps")
    return how


def fuse_maps(maps: list[np.ndarray], how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(combined, its min-max) of per-layer maps [N, H, W] in [0, 1] (same H, W), normalized as
    the module doc says: see there."""
    if how not in HOWS:
        raise OnnxCamError(f"fusion must be one of {', '.join(HOWS)}, got {describe(how)}")
    if not maps or len({m.shape for m in maps}) != 1:
        raise OnnxCamError("fusion needs one or more maps of the same shape [N, H, W]")
    stack = np.stack([np.asarray(m, np.float32) for m in maps])
    combined = stack.mean(axis=0) if how == "mean" else np.tanh(LAYERCAM_GAMMA * stack).max(axis=0)
    return combined.astype(np.float32), minmax(combined)


def add_fused(result, how: str | None, order: str, size: tuple[int, int]):
    """`result` with the map "fused" added after its layers (unchanged when how is None); order:
    the method's normalization order, size: the model's input (H, W)."""
    if how is None:
        return result
    layers = list(result.maps)
    raw, fused = fuse_maps([normalize(result.raw[name], size, order, final=False) for name in layers], how)
    result.raw[FUSED], result.maps[FUSED] = raw, fused
    result.notes.append(f"fused: {how} of the normalized maps of {len(layers)} layers ({', '.join(layers)})"
                        + (f", each scaled by tanh({LAYERCAM_GAMMA:g} x map) first" if how == "max" else ""))
    return result
