"""The pictures and arrays of one explained image: captioned overlays at the photo's resolution
(or the model's), the per-layer grid, the side-by-side montage of several methods, and the .npz
contents. The CLI and the demo decide which files to write; this module decides what is in them.

Colour scale. By default each map is scaled on its own (its method's normalization: min-max, or
symmetric for signed relevance), so every picture uses the whole colormap. With shared_scale, the
maps of one image that are drawn together (every layer and method of one call) share one scale:
the ReLU of each raw map, upsampled, divided by the largest value among them, so a weak layer
looks weak next to a strong one. Raw units differ between method families (gradient x activation
for the Grad-CAM family, softmax scores for Score-CAM, relevance for Relevance-CAM), so a shared
scale compares layers of one method, or methods of one family; signed maps (LRP) keep their own
symmetric scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import methods
from .errors import OnnxCamError
from .fusion import FUSED
from .mapback import to_photo
from .postprocess import check_style, hatched, overlay, pixels_to_rgb, resize
from .preprocess import view_geometry
from .render import captioned, montage

AT = ("photo", "model")
GRID_COLUMNS = 4
ONE_ROW_MAX = 6    # a montage of at most this many tiles is one row; more go GRID_COLUMNS per row


@dataclass(frozen=True)
class Style:
    """How overlays look. at: "photo" (the original photo's pixels and aspect ratio) or "model"
    (the view the model saw, spec.size). colormap: an OpenCV colormap name. alpha: heatmap weight
    0..1. shared_scale: one colour scale for all maps of an image drawn together (module doc)."""
    at: str = "photo"
    colormap: str = "jet"
    alpha: float = 0.5
    shared_scale: bool = False

    def __post_init__(self):
        if self.at not in AT:
            raise OnnxCamError(f"at must be 'photo' or 'model', got {self.at!r}")
        check_style(self.colormap, self.alpha)


class ImageFigures:
    """Everything drawn for image i of one or more Results (same images, same explainer)."""

    def __init__(self, explainer, results: list, i: int, view: np.ndarray, photo: np.ndarray,
                 name: str, style: Style = Style(), marks=None):
        self.ex, self.results, self.i, self.view, self.photo = explainer, results, i, view, photo
        self.marks = marks   # annotate.Marks: boxes / a region outline drawn on every overlay
        self.name, self.style = name, style
        self._depth = {layer.name: layer.depth for layer in explainer.layers}
        self._shared_max = self._group_max() if style.shared_scale else None

    # ----- maps
    def _signed(self, res) -> bool:
        return methods.get(res.method).signed

    def _shared(self, res, layer: str) -> np.ndarray:
        """ReLU of the raw map upsampled to the model's input, at the group's scale (module doc)."""
        raw = res.raw[layer][self.i][None]
        up = np.maximum(resize(raw, self.view.shape[:2])[0], 0)
        return up / self._shared_max if self._shared_max > 0 else np.zeros_like(up)

    def _group_max(self) -> float:
        peaks = [float(np.maximum(res.raw[layer][self.i], 0).max()) for res in self.results
                 for layer in res.layers if not self._signed(res) and not self._is_fused(res, layer)]
        return max(peaks, default=0.0)

    def model_map(self, res, layer: str) -> np.ndarray:
        """The map as drawn, over the model's view [h, w] in [0, 1]."""
        if self.style.shared_scale and not self._signed(res) and not self._is_fused(res, layer):
            return self._shared(res, layer)   # a fused map has no raw units: drawn on its own scale
        return res.maps[layer][self.i]

    def photo_map(self, res, layer: str) -> np.ndarray:
        """The normalized map on the photo's pixels [H, W]; NaN where the model did not look."""
        return to_photo(res.maps[layer][self.i], self.photo.shape[:2], self.ex.preprocess)

    def _fused(self, res) -> bool:
        """Whether the result holds a fused map (onnxcam.fusion), not a layer of that name."""
        return FUSED in res.maps and FUSED not in self._depth

    def _is_fused(self, res, layer: str) -> bool:
        return layer == FUSED and self._fused(res)

    # ----- pictures
    def overlay(self, res, layer: str) -> np.ndarray:
        heat = self.model_map(res, layer)
        s = self.style
        if s.at == "model":
            picture = overlay(self.view, heat, s.alpha, self._signed(res), s.colormap)
        else:
            heat = to_photo(heat, self.photo.shape[:2], self.ex.preprocess)
            picture = overlay(self.photo, heat, s.alpha, self._signed(res), s.colormap)
        if self.marks is None:
            return picture
        return self.marks.draw(picture, None if s.at == "model" else self.photo.shape[:2], self.ex.preprocess)

    def pixels(self, res, layer: str) -> np.ndarray:
        """A pixel attribution as an image (guided gradients in grey, signed relevance on the
        diverging colormap), on the photo (at="photo": each channel mapped back, the unseen parts
        hatched) or on the model's view."""
        rgb = pixels_to_rgb(res.pixels[layer][self.i], self.ex.preprocess.channel_order, self._signed(res))
        if self.style.at == "model":
            return rgb
        planes = np.stack([to_photo(rgb[..., c].astype(np.float32), self.photo.shape[:2], self.ex.preprocess)
                           for c in range(3)], axis=-1)
        unseen = np.isnan(planes[..., 0])
        planes[unseen] = hatched(self.photo)[unseen]
        return np.uint8(np.clip(np.rint(planes), 0, 255))

    def target_line(self, res) -> str:
        if self.marks is not None and self.marks.caption:   # a detection: its class and score
            return self.marks.caption
        k = int(res.target[self.i])
        score = float(res.logits[self.i, k])
        name = self.ex.labels[k] if self.ex.labels and k < len(self.ex.labels) else f"class {k}"
        if not self.ex.model.class_scores:   # a region sum or a similarity: no probability to show
            return f"{name} (column {k}) score {score:.3g}"
        prob = float(self.ex.probabilities(res.logits[self.i:self.i + 1])[0, k])
        return f"{name} (class {k}) p={prob:.2f}, score {score:.2f}"

    def caption(self, res, layer: str, with_target: bool = True, note: str = "") -> list[str]:
        title = methods.get(res.method).title + (f" ({res.variant})" if res.variant else "") + (f", {note}" if note else "")
        depth = self._depth.get(layer)
        if layer == self.ex.model.input_name:
            where = "on the input pixels"
        elif self._is_fused(res, layer):
            where = f"fused over {len(res.layers) - 1} layers"
        else:
            where = f"at layer {layer}" + (f" (depth {depth})" if depth is not None else "")
        lines = [self.target_line(res)] if with_target else []
        lines.append(f"{title} {where}")
        if self.style.shared_scale and not self._signed(res):
            lines.append("shared colour scale")
        return lines

    def tile(self, res, layer: str) -> np.ndarray:
        """One overlay with its caption (class and score, method, layer)."""
        return captioned(self.overlay(res, layer), self.caption(res, layer))

    def grid(self, res) -> np.ndarray:
        """Every layer of one result, titled with the image, class and method."""
        tiles = [self.overlay(res, layer) for layer in res.layers]
        captions = [self.caption(res, layer, with_target=False) for layer in res.layers]
        fused = self._fused(res)
        title = [f"{self.name}: {self.target_line(res)}",
                 f"{methods.get(res.method).title} at {len(res.layers) - fused} layers"
                 + (" and their fusion" if fused else "")]
        return montage(tiles, captions, title, cols=GRID_COLUMNS)

    def montage(self, shown: list[tuple] | None = None) -> np.ndarray:
        """Several overlays side by side, titled with the image (and the class when all explain
        the same one). shown: (result, layer) or (result, layer, note for the caption) triples;
        default every layer of every result."""
        shown = [(s + ("",))[:3] for s in shown] if shown else \
            [(res, layer, "") for res in self.results for layer in res.layers]
        same = len({int(res.target[self.i]) for res, _, _ in shown}) == 1
        title = [f"{self.name}: {self.target_line(shown[0][0])}" if same else self.name]
        tiles = [self.overlay(res, layer) for res, layer, _ in shown]
        captions = [self.caption(res, layer, not same, note) for res, layer, note in shown]
        cols = len(tiles) if len(tiles) <= ONE_ROW_MAX else GRID_COLUMNS
        return montage(tiles, captions, title, cols=cols)

    # ----- arrays
    def arrays(self, res) -> dict:
        """What one image's .npz holds (see cli._arrays) plus, at="photo", the maps on the photo."""
        arrays = {}
        if self.style.at == "photo":
            g = view_geometry(self.photo.shape[:2], self.ex.preprocess)
            arrays["photo_hw"] = np.array(self.photo.shape[:2], np.int64)
            arrays["seen_box"] = np.array(g.seen_box(), np.float64)
            for j, layer in enumerate(res.layers):
                arrays[f"photo_map_{j}"] = self.photo_map(res, layer).astype(np.float16)   # see cli._arrays
        return arrays
