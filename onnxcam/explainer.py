"""`Explainer`: the Python API. Loads a model once, caches explain graphs, runs methods."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from . import engine, fusion, inputs, intake, methods, postprocess, smoothing
from ._runtime import runtime_warning
from .errors import OnnxCamError, describe, first_line
from .graph.backward import SEED, gradient_graph
from .graph.expose import SCORES, forward_graph
from .graph.kinks import output_name as near_kinks_output
from .graph.ablation import FILL, KEEP, ablation_graph
from .graph.ablation import IMAGE as ABLATION_IMAGE
from .graph.masking import BASE as MASK_BASE
from .graph.masking import IMAGE, MAPS, masked_scores_graph
from .files import confine, read_json_object
from .preprocess import PreprocessSpec, find_sidecar, read_labels, spec_from_dict
from .progress import Progress
from .targets.base import Target as TargetObject

#: A target: None (each image's top-1 class), a class index, one index per image, or class
#: weights [K] / [N, K] (S = sum_k w_k y_k).
Target = Union[None, int, Sequence[int], np.ndarray]
#: Layers: "auto", "all", a layer name, or a list of names (see Explainer.layers).
Layers = Union[str, Sequence[str]]


@dataclass
class Result:
    """Maps in [0, 1] at input resolution, raw maps at feature resolution, scores and targets."""
    method: str
    maps: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    logits: np.ndarray
    target: np.ndarray
    provider: str
    notes: list[str] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # [N, C] for weight-based methods
    pixels: dict[str, np.ndarray] = field(default_factory=dict)   # [N, C, H, W] pixel-level methods
    # gradient methods: per layer, units per image of gates (ReLU, Clip, ...) between the layer and
    # the score within float32 rounding of their threshold (graph/kinks.py); the gradient may
    # differ between runtimes where this is > 0
    near_kinks: dict[str, np.ndarray] = field(default_factory=dict)
    # relevance methods (lrp, srmap): per layer ("input" and a few cuts of the graph, score first),
    # the fraction Σ R / start relevance per image [N] (onnxcam/conservation.py); NaN: start was 0
    conservation: dict[str, np.ndarray] = field(default_factory=dict)
    # what wrapped the method (smoothing.py), for captions: "SmoothGrad, 16 noisy copies", ...
    variant: str = ""

    @property
    def layers(self) -> list[str]:
        return list(self.maps)


class Explainer:
    """Explain one ONNX classifier.

    model: path to a .onnx file or an onnx.ModelProto. providers: None picks CUDA when usable,
    else CPU. preprocess: a PreprocessSpec, a dict, or None (manifest/sidecar next to the model,
    else ImageNet defaults at the model's input size). score: "logits" explains the input of a
    final Softmax/Sigmoid, "output" the exported output. memory_budget_mb / max_batch bound the
    batches sent to onnxruntime. Every tensor onnxruntime returns is checked to be finite: NaN or
    infinity (NaN weights, an input that overflows) raises an OnnxCamError naming the first
    non-finite tensor, unless allow_nonfinite (compare's candidate: a broken build must fail the
    gate, not stop the comparison). labels: class names (a list, or a file with one per line)
    instead of those the sidecar names; their count must equal the number of classes.
    target: an onnxcam.targets object (Segment, Embed, MultiLabel, Output, Classify) that turns
    the model's outputs into the explained score in the graph; None: the classifier's logits.
    """

    def __init__(self, model: str | Path | Any, providers: list[str] | None = None,
                 preprocess: PreprocessSpec | dict | None = None, score: str = "logits",
                 memory_budget_mb: float = engine.DEFAULT_BUDGET_MB,
                 max_batch: int = engine.DEFAULT_MAX_BATCH, threads: int | None = None,
                 progress: bool = False, allow_nonfinite: bool = False,
                 labels: str | Path | list[str] | None = None, target: Any = None) -> None:
        if preprocess is not None and not isinstance(preprocess, (PreprocessSpec, dict)):
            raise OnnxCamError(f"preprocess must be a PreprocessSpec, a dict of its fields or None, "
                               f"got {type(preprocess).__name__}")
        engine.check_limits(memory_budget_mb, max_batch)
        if threads is not None:
            _check_count("threads", threads)
        self.allow_nonfinite = allow_nonfinite
        sidecar = find_sidecar(model) if isinstance(model, (str, Path)) else None
        self.sidecar = read_json_object(sidecar, "sidecar") if sidecar else {}
        self.model = intake.load(model, score=score, image_size=self._requested_size(preprocess), target=target)
        self.given_model, self.target = model, target
        self.providers = engine.choose_providers(providers)
        self.sessions = engine.SessionCache(self.providers, threads)
        self.score, self.threads = score, threads
        self.memory_budget_mb = memory_budget_mb
        self.max_batch = max_batch
        self.progress = progress
        self.source = str(model) if isinstance(model, (str, Path)) else "<ModelProto>"
        self._batches: dict = {}
        self.class_names = None   # a detector's class names (Detect's columns are candidates, not classes)
        self.labels = self._read_labels(sidecar) if labels is None else self._given_labels(labels)
        self.class_names = self.class_names or self.labels
        self.preprocess = self._resolve_spec(preprocess)
        warning = runtime_warning()
        if warning:
            self.model.notes.append(warning)

    def derived(self, proto, target: Any = None) -> "Explainer":
        """An Explainer of an edited copy of this model (e.g. randomized layers) with the same
        providers, preprocessing, score choice, engine limits and target (unless one is given)."""
        return Explainer(proto, providers=self.providers, preprocess=self.preprocess, score=self.score,
                         memory_budget_mb=self.memory_budget_mb, max_batch=self.max_batch,
                         threads=self.threads, progress=self.progress, allow_nonfinite=self.allow_nonfinite,
                         labels=self.labels if target is None else None, target=target or self.target)

    def with_target(self, target: Any) -> "Explainer":
        """An Explainer of the same model file explaining `target` (an onnxcam.targets object)."""
        return self.derived(self.given_model, target)

    # ----- what the model offers
    @property
    def layers(self):
        return self.model.layers

    @property
    def provider(self) -> str:
        """The execution provider actually used (onnxruntime-gpu may fall back to CPU)."""
        return self.sessions.provider or self._forward_session(())[0].provider

    def _requested_size(self, preprocess):
        """The image size the user or the sidecar asks for, if any (fixes dynamic model inputs)."""
        if isinstance(preprocess, PreprocessSpec):
            return tuple(preprocess.size)
        for source in (preprocess or {}, self.sidecar):
            size = source.get("size") or source.get("input_size")
            if size is not None:
                return spec_from_dict({"size": size}).size  # checked before intake uses it
        return None

    def _read_labels(self, sidecar: Path | None) -> list[str] | None:
        name = self.sidecar.get("labels")
        if name is None or sidecar is None:
            return None
        return self._count_labels(read_labels(confine(name, sidecar.parent, "labels file", sidecar)), name)

    def _given_labels(self, labels) -> list[str]:
        """Labels the caller passes: a label file (read like the sidecar's) or a list of names."""
        if isinstance(labels, (str, Path)):
            return self._count_labels(read_labels(Path(labels)), labels)
        if not isinstance(labels, (list, tuple)) or not all(isinstance(n, str) for n in labels):
            raise OnnxCamError(f"labels must be a label file path or a list of class names, got {describe(labels)}")
        return self._count_labels([n.strip() for n in labels], "labels")

    def _count_labels(self, labels: list[str], name) -> list[str] | None:
        classes = getattr(self.target, "classes", None)   # a detector's K classes, not S's candidate columns
        if classes is not None and classes != self.model.num_classes and len(labels) == classes:
            self.class_names = labels
            return None
        if len(labels) != self.model.num_classes:
            raise OnnxCamError(f"label file {name} has {len(labels)} names for {self.model.num_classes} classes; "
                               "give one class name per line, in class index order")
        return labels

    def _resolve_spec(self, preprocess) -> PreprocessSpec:
        c, h, w = self.model.image_shape
        base = spec_from_dict(self.sidecar, PreprocessSpec(size=(h, w), layout=self.model.layout, channels=c),
                              strict=False, notes=self.model.notes)
        if isinstance(preprocess, PreprocessSpec):
            spec = preprocess
        elif isinstance(preprocess, dict):
            spec = spec_from_dict(preprocess, base)
        else:
            spec = base
        spec = spec if spec.channels is not None else spec.updated(channels=c)
        if spec.channels != c:
            raise OnnxCamError(f"preprocessing gives {spec.channels}-channel images but the model takes {c}; "
                               "fix channels (or leave it out: the model's own count is used)")
        if tuple(spec.size) != (h, w) or spec.layout != self.model.layout:
            raise OnnxCamError(f"preprocessing gives {spec.layout} {tuple(spec.size)} images but the model "
                               f"takes {self.model.layout} {(h, w)}; fix the size/layout")
        return spec

    # ----- engine access shared by methods
    def _run(self, sess, feeds: dict, what: dict[str, str], first: int = 0) -> dict[str, np.ndarray]:
        """One onnxruntime run whose outputs are all checked to be finite, in the order of `what`
        ({output name: what it is in words}; dataflow order, so the first named is where it starts).
        `first`: index of the batch's first image, for the message."""
        out = sess.run(feeds)
        if not self.allow_nonfinite:
            for name, words in what.items():
                arr = out[name]
                with np.errstate(over="ignore", invalid="ignore"):  # no numpy warning lines
                    total = arr.sum()
                if np.isfinite(total):
                    continue   # all finite: one summing pass, no mask (a sum that overflows on finite
                    # values, or any NaN/inf, goes on to the exact per-image check)
                bad = ~np.isfinite(arr.reshape(arr.shape[0] if arr.ndim else 1, -1)).all(axis=1)
                if bad.any():
                    images = ", ".join(str(first + int(i)) for i in np.flatnonzero(bad)[:5])
                    raise OnnxCamError(
                        f"the model computes NaN or infinite values: {words} (image {images}); check its "
                        "weights for NaN/inf and that the input is preprocessed as the model expects "
                        "(values in the range it was trained on)")
        return out

    def _batch(self, key) -> int:
        """Batch size of the explain graph cached under `key`, computed once per graph."""
        if key not in self._batches:
            self._batches[key] = engine.batch_size(self.sessions.per_sample(key), self.memory_budget_mb,
                                                   self.max_batch, self.model.batchable)
        return self._batches[key]

    def _forward_session(self, layer_names: tuple[str, ...]):
        return self.sessions.get(("forward", layer_names),
                                 lambda: forward_graph(self.model.proto, self.model.score_name,
                                                       list(layer_names)))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities from explained scores: sigmoid for a model that ends in Sigmoid
        (multi-label), softmax otherwise; the scores themselves when they already are the output
        of the model's final Softmax/Sigmoid (score="output")."""
        scores = np.asarray(scores, np.float64)
        m = self.model
        if m.score_name == m.output_name and m.output_activation in ("Softmax", "Sigmoid"):
            return scores
        if m.final_activation == "Sigmoid":
            return 1.0 / (1.0 + np.exp(-scores))
        return postprocess.softmax(scores)

    def check_input(self, x) -> np.ndarray:
        """x as a C-contiguous float32 batch [N, ...] of the model's image shape, or one line why not."""
        if isinstance(x, (str, bytes, Path)) or x is None:
            raise OnnxCamError(f"explain takes a preprocessed float array, got {type(x).__name__}; "
                               "read image files with onnxcam.load_images(paths, ex.preprocess)")
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise OnnxCamError(f"input is not an array of numbers ({first_line(exc, 120)}); "
                               "give a float array [N, C, H, W] or [N, H, W, C]") from None
        if x.dtype.kind not in "fiu":
            raise OnnxCamError(f"input array has dtype {x.dtype}, not real numbers; give float32 "
                               "images (complex, bool, object and string arrays are refused)")
        c, h, w = self.model.image_shape
        want = (c, h, w) if self.model.layout == "NCHW" else (h, w, c)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise OnnxCamError(f"input batch has shape {tuple(x.shape)}, the model wants [N, {', '.join(map(str, want))}] "
                               f"({self.model.layout}); use onnxcam.load_images(paths, ex.preprocess), or give "
                               "ex.explain paths or uint8 RGB images [H, W, 3]")
        if len(x) == 0:
            raise OnnxCamError("input batch has 0 images; give at least one")
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise OnnxCamError("input batch contains NaN or infinite values (or values beyond float32's "
                               "range, ~3.4e38); give preprocessed images")
        return x

    def forward(self, x: np.ndarray, layers: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scores [N, K] and activations {layer: [N, C, h, w]} (NCHW) from batched runs."""
        x = self.check_input(x)
        names = tuple(layer.name if hasattr(layer, "name") else layer for layer in layers)
        sess, carried = self._forward_session(names)
        step = self._batch(("forward", names))
        what = {out: f"activations of layer {n}" for n, out in carried.items()} | {SCORES: "the scores"}
        outs = [self._run(sess, {self.model.input_name: x[i:i + step]}, what, i) for i in range(0, len(x), step)]
        scores = engine.join_batches(outs, SCORES)
        acts = {}
        for layer in self.model.resolve_layers(list(names)) if names else []:
            a = engine.join_batches(outs, carried[layer.name])
            acts[layer.name] = a.transpose(0, 3, 1, 2) if layer.layout == "NHWC" else a
        return scores, acts

    def _gradient_session(self, layer_names: tuple[str, ...], top1: bool, rules_name: str = "plain",
                          rules=None, start: str = "seed"):
        key = ("gradient", layer_names, top1, rules_name, start)
        sess, carried = self.sessions.get(key, lambda: gradient_graph(
            self.model.proto, self.model.score_name, list(layer_names), top1,
            rules() if callable(rules) else rules, start, kinks=rules is None))
        return sess, carried, self._batch(key)

    def gradients(self, x: np.ndarray, layers: Sequence[str], target: Target = None, rules_name: str = "plain",
                  rules=None, start: str = "seed", near_kinks: dict | None = None
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One run per batch: scores [N, K], targets [N], activations and dS/dA per layer (NCHW).

        The tensors may be layer names (catalog entries) or the model's input name. With LRP rules
        (`rules`: a table, or a function building it, called only when the graph is built; keyed by
        `rules_name`) the "gradients" are relevances and `start` picks the initial relevance.
        near_kinks: a dict to fill, for plain gradients, with {layer: [N] count of gate units on
        the path within float32 rounding of their threshold} (graph/kinks.py).
        """
        x = self.check_input(x)
        names = tuple(layer.name if hasattr(layer, "name") else layer for layer in layers)
        targets, seed = self.model.seed_for(target, len(x))
        if seed is not None and start == "contrastive" and not np.all(np.isin(seed, (0.0, 1.0))):
            raise OnnxCamError("a contrastive start needs a class index target, not class weights")
        sess, carried, step = self._gradient_session(names, seed is None, rules_name, rules, start)
        kind = "gradients" if rules is None else "relevances"
        what = ({a: f"activations of layer {n}" for n, (a, _) in carried.items()} | {SCORES: "the scores"}
                | {g: f"{kind} at layer {n}" for n, (_, g) in reversed(carried.items())})
        outs = []
        for i in range(0, len(x), step):
            feeds = {self.model.input_name: x[i:i + step]}
            if seed is not None:
                feeds[SEED] = seed[i:i + step]
            outs.append(self._run(sess, feeds, what, i))
        scores = engine.join_batches(outs, SCORES)
        if targets is None:
            targets = scores.argmax(axis=1)
        layouts = {layer.name: layer.layout for layer in self.model.layers}
        layouts[self.model.input_name] = self.model.layout
        acts, grads = {}, {}
        for name in names:
            a_name, g_name = carried[name]
            a, g = engine.join_batches(outs, a_name), engine.join_batches(outs, g_name)
            if layouts.get(name) == "NHWC":
                a, g = a.transpose(0, 3, 1, 2), g.transpose(0, 3, 1, 2)
            acts[name], grads[name] = a, g
            if near_kinks is not None and rules is None:
                out = near_kinks_output(name)
                near_kinks[name] = (engine.join_batches(outs, out).astype(np.int64)
                                    if out in outs[0] else np.zeros(len(x), np.int64))
        return scores, targets, acts, grads

    def activations_and_gradients(self, x: np.ndarray, layers: Layers = "auto", target: Target = None
                                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{layer: (A [N,C,h,w], dS/dA [N,C,h,w])} from one onnxruntime run per batch.

        target: None (top-1), an int, one int per image, or class weights [K] / [N, K].
        """
        chosen = self.model.resolve_layers(layers)
        _, _, acts, grads = self.gradients(x, chosen, target)
        return {layer.name: (acts[layer.name], grads[layer.name]) for layer in chosen}

    def relevance(self, x: np.ndarray, layers: Layers = ("input",), composite: Any = None,
                  target: Target = None, start: str = "logit") -> dict[str, np.ndarray]:
        """LRP relevance {layer | 'input': R} from one run per batch.

        composite: a name in onnxcam.lrp.COMPOSITES or a Composite (your own mapping of layers to
        rules); None: "attnlrp" on a graph with attention, else "epsilon-plus-flat". start: "logit"
        (R = y_c at the target), "onehot" (R = 1) or "contrastive" (1 at the target, -1/K elsewhere).
        """
        if composite is None:
            from .graph.rules.lrp_attention import default_composite
            composite = default_composite(self.model, "epsilon-plus-flat")
        return self.relevance_run(x, layers, composite, target, start)[3]

    def relevance_run(self, x, layers, composite, target, start):
        """(scores, targets, activations, relevances) for relevance-based methods."""
        from .graph.rules.lrp import COMPOSITES, Composite, relevance_rules

        if isinstance(composite, str):
            if composite not in COMPOSITES:
                raise OnnxCamError(f"unknown composite {composite!r}; available: {', '.join(COMPOSITES)}")
            composite = COMPOSITES[composite]
        elif not isinstance(composite, Composite):
            raise OnnxCamError("composite must be a name or an onnxcam.lrp.Composite")
        starts = {"logit": "logit", "onehot": "seed", "contrastive": "contrastive"}
        if start not in starts:
            raise OnnxCamError(f"start must be one of {', '.join(starts)}, got {start!r}")
        try:
            items = [layers] if isinstance(layers, str) else list(layers)
        except TypeError:
            raise OnnxCamError(f"layers must be 'input', a layer name or a list of them, got "
                               f"{describe(layers)}") from None
        if not items:
            raise OnnxCamError("layers is empty: name 'input' and/or layers (see ex.layers)")
        names = [self.model.input_name if l in ("input", self.model.input_name)
                 else self.model.layer(getattr(l, "name", l)).name for l in items]
        def rules():
            return relevance_rules(composite, self.model.first_linear, self.box_bounds(),
                                   self.model.conv_biases)
        # keyed by the composite's content, not its id: a new object may reuse a freed id
        scores, targets, acts, rel = self.gradients(x, names, target, rules_name=f"lrp:{composite!r}",
                                                    rules=rules, start=starts[start])
        rename = {self.model.input_name: "input"}
        return (scores, targets, {rename.get(k, k): v for k, v in acts.items()},
                {rename.get(k, k): v for k, v in rel.items()})

    def box_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel input bounds for z^B: pixels 0 and 255 through the preprocessing."""
        spec = self.preprocess
        mean, std = np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64)
        return (0.0 - mean) / std, (255.0 * spec.scale - mean) / std

    def masked_scores(self, image: np.ndarray, maps: np.ndarray, align_corners: bool,
                      eps: float | None, what: str = "Score-CAM", base: np.ndarray | None = None,
                      progress: bool = True) -> np.ndarray:
        """Scores [M, K] of one image multiplied by each upsampled, min-max normalized map [M,1,h,w]
        (eps=None: maps used as given, no min-max); with a baseline image `base`, of
        base + (image − base) ⊙ mask (graph/masking.py). progress=False: no bar of its own (a
        caller making many small calls keeps one bar over them all)."""
        m = self.model
        blend = base is not None
        fixed = {IMAGE: image - base, MASK_BASE: base} if blend else {IMAGE: image}
        return self.batched_scores(("masked", align_corners, eps, blend), lambda: masked_scores_graph(
            m.proto, m.input_name, m.layout, m.image_shape[1:], m.score_name, align_corners, eps, blend),
            fixed, MAPS, maps, what, progress)

    def ablated_scores(self, image: np.ndarray, layer: str, keep: np.ndarray, fill: float) -> np.ndarray:
        """Scores [M, K] of one image with the layer's channels ablated per row of keep [M, C]
        (0: the channel takes the value fill) (graph/ablation.py)."""
        m = self.model
        info = m.layer(layer)
        return self.batched_scores(("ablation", layer), lambda: ablation_graph(
            m.proto, m.input_name, layer, info.layout, m.score_name),
            {ABLATION_IMAGE: image, FILL: np.array([fill], np.float32)}, KEEP, keep, "AblationCAM")

    def batched_scores(self, key, build, fixed: dict, rows_name: str, rows: np.ndarray, what: str,
                       progress: bool = True) -> np.ndarray:
        """Scores [M, K] of a graph (built once per key by build()) fed `fixed` inputs (kept on
        the device) and rows [M, ...] of `rows_name` in batches under the memory budget."""
        sess, _ = self.sessions.get(key, lambda: (build(), None))
        step = self._batch(key)
        fixed = {k: sess.to_device(np.ascontiguousarray(v, np.float32)) for k, v in fixed.items()}
        rows = np.ascontiguousarray(rows, np.float32)
        out = []
        bar = Progress(len(rows), f"{what} forwards", enabled=self.progress and progress)
        for i, stop in engine.even_batches(len(rows), step):
            out.append(self._run(sess, fixed | {rows_name: rows[i:stop]},
                                 {SCORES: f"the scores of the {what} images"})[SCORES])
            bar.update(stop - i)
        bar.close()
        return np.concatenate(out) if out else np.zeros((0, self.model.num_classes), np.float32)

    # ----- the public call
    def explain(self, x: inputs.ImageInput, method: str = "hirescam", layers: Layers = "auto",
                target: Target = None, color_order: str = "RGB", fuse: bool | str = False,
                **options: Any) -> Result:
        """Explain images with one method at one or more layers.

        x: an image path or a list of paths; uint8 pixels ([H, W, 3], a list of them, or [N, H, W, 3];
        RGB, or BGR with color_order="BGR" as cv2.imread gives); PIL images; or a preprocessed float32
        batch [N, C, H, W] / [N, H, W, C] (onnxcam.load_images). Pixels and files are preprocessed
        with ex.preprocess (onnxcam.inputs). method: a name in onnxcam.methods (default HiResCAM:
        one gradient run, faithful to the score on any head). layers: "auto", "all", a name or a
        list. target: None (top-1 per image, or the class the Explainer's target object names), an
        int, one int per image, or class weights; an onnxcam.targets object explains with
        ex.with_target(it) (a new graph each call: bind it once for repeated calls). fuse: with
        several layers, True / "mean" or "max" adds the map "fused" of them all (onnxcam.fusion).
        options: the method's own (methods.get(name).options: top_k, eigen_smooth, steps, ...), and
        for every method aug_smooth=True (maps averaged over flips and scales) and smooth="grad"|"var"
        with samples, noise, seed (mean or variance over noisy copies; onnxcam/smoothing.py).
        """
        if isinstance(target, TargetObject):
            return self.with_target(target).explain(x, method, layers, None, color_order, fuse, **options)
        if not isinstance(method, str):
            raise OnnxCamError(f"method must be a method name (str), got {type(method).__name__}")
        smoothed = smoothing.input_smoothing(self, x, method, layers, target, color_order, fuse, options)
        if smoothed is not None:
            return smoothed
        spec = methods.get(method)
        unknown = set(options) - set(spec.options)
        if unknown:
            raise OnnxCamError(f"method {method!r} takes no option(s) {', '.join(sorted(unknown))}"
                               + (f"; it takes: {', '.join(spec.options)}" if spec.options else ""))
        x = self.check_input(inputs.to_batch(x, self.preprocess, color_order)[0])
        chosen = self.model.resolve_layers(layers)
        how = fusion.fusion_rule(fuse, spec, chosen)
        grads = {}
        if spec.own_run:
            req = methods.Request(self, x, chosen, target, None, {}, options=options)
            raw = spec.compute(req)
            return fusion.add_fused(self._result(spec, req, raw), how, spec.order, self.model.image_shape[1:])
        if spec.needs_gradients:
            kinks = {}
            scores, targets, acts, grads = self.gradients(x, chosen, target, near_kinks=kinks)
        else:
            scores, acts = self.forward(x, chosen)
            targets = self.model.check_targets(target, len(x))
            if targets is None:
                targets = scores.argmax(axis=1)
        req = methods.Request(self, x, chosen, targets, scores, acts, gradients=grads, options=options)
        result = self._result(spec, req, spec.compute(req))
        if spec.needs_gradients:
            result.near_kinks = kinks
            result.notes += kink_notes(spec.name, kinks)
        return fusion.add_fused(result, how, spec.order, self.model.image_shape[1:])

    def _result(self, spec, req, raw) -> Result:
        size = self.model.image_shape[1:]
        maps = {name: postprocess.normalize(r, size, spec.order) for name, r in raw.items()}
        return Result(spec.name, maps, raw, req.scores, np.asarray(req.targets), self.provider,
                      list(self.model.notes) + req.notes, req.weights, req.pixels,
                      conservation=req.conservation)


def kink_notes(method: str, near_kinks: dict[str, np.ndarray], shown: int = 3) -> list[str]:
    """One note per layer where some image has gate units within rounding of their threshold."""
    notes = []
    for layer, counts in near_kinks.items():
        hit = np.flatnonzero(counts)
        if hit.size == 0:
            continue
        parts = [f"{int(counts[i])} in image {i}" for i in hit[:shown]]
        more = f" and {hit.size - shown} more images" if hit.size > shown else ""
        notes.append(f"{method} at {layer}: gate units (ReLU/Clip/...) within float32 rounding of their "
                     f"threshold: {', '.join(parts)}{more} (the map may differ between runtimes there)")
    return notes


def _check_count(name: str, value) -> None:
    """A positive int argument (bool and float refused: True would silently mean 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OnnxCamError(f"{name} must be a positive integer, got {describe(value)}")
