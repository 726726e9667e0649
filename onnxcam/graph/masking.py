"""Score-CAM's masked batch, built inside the ONNX graph.

Inputs: one image [1,C,H,W] (or [1,H,W,C]) and M feature maps [M,1,h,w]. The graph upsamples the
maps to the input size, min-max normalizes each (Score-CAM; eps=None: the masks are used as given,
for perturbation methods whose masks are already in [0, 1]), multiplies the image by each mask and
runs the model on the [M,...] batch, returning the scores [M,K]. Masks never leave the device.
"""
from __future__ import annotations

import copy

import onnx
from onnx import helper

from .builder import GraphBuilder
from .expose import end_at_scores

IMAGE = "onnxcam/image"
MAPS = "onnxcam/maps"
BASE = "onnxcam/base"


def masked_scores_graph(proto: onnx.ModelProto, input_name: str, layout: str,
                        image_hw: tuple[int, int], score_name: str, align_corners: bool,
                        eps: float | None, blend: bool = False) -> onnx.ModelProto:
    """The Score-CAM graph. align_corners picks the upsampling grid (False = half-pixel, as
    F.interpolate(align_corners=False) and cv2.resize); eps is added to (max - min); None: no
    min-max (masks at the input size are then used exactly as given). blend: the model sees
    BASE + IMAGE ⊙ mask (feed IMAGE = x − b, BASE = b: x where the mask is 1, the baseline b where
    it is 0, as Group-CAM blends with a blurred image)."""
    model = copy.deepcopy(proto)
    g = model.graph
    original = next(i for i in g.input if i.name == input_name)
    in_type = original.type.tensor_type.elem_type
    b = GraphBuilder(model)
    mask = b.resize_to(MAPS, image_hw, align_corners, hint="up")
    if eps is not None:
        mask = b.minmax(mask, eps, hint="mask")
    if layout == "NHWC":
        mask = b.op("Transpose", [mask], hint="mask_nhwc", perm=[0, 2, 3, 1])
    if in_type != onnx.TensorProto.FLOAT:
        mask = b.op("Cast", [mask], hint="mask_cast", to=in_type)
    if blend:
        b.op("Add", [BASE, b.op("Mul", [IMAGE, mask], hint="masked")], outputs=[input_name])
    else:
        b.op("Mul", [IMAGE, mask], outputs=[input_name])
    b.prepend_to(g)
    end_at_scores(model, score_name, input_name, [
        helper.make_tensor_value_info(IMAGE, in_type, None),
        helper.make_tensor_value_info(MAPS, onnx.TensorProto.FLOAT, ["M", 1, None, None])]
        + ([helper.make_tensor_value_info(BASE, in_type, None)] if blend else []))
    return model
