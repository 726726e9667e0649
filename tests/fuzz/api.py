"""Hypothesis strategies for the Python API: values a caller can pass that the CLI never would
(complex, object, empty arrays, wrong types, layers=[], NaN maps to the metrics).

They run in-process (harness.run_api): an OnnxCamError is a refusal, any other exception a
traceback, a returned value is checked (finite, non-empty, maps in [0, 1]).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import strategies as st

from .harness import Case
from .strategies import Plan
from .workspace import SMALL_CLASSES, SMALL_SIZE, Sandbox, small_model, small_model_bytes

SHAPE = (3, SMALL_SIZE, SMALL_SIZE)


@functools.lru_cache(maxsize=1)
def explainer():
    """One Explainer of the small CNN per process (its sessions are cached across cases)."""
    import onnxcam
    return onnxcam.Explainer(small_model())


def _valid_batch(n: int = 1) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n,) + SHAPE).astype(np.float32)


# name -> (builder, must the API refuse it?)
INPUTS = {
    "valid": (lambda: _valid_batch(1), False),
    "valid_pair": (lambda: _valid_batch(2), False),
    "single_chw": (lambda: _valid_batch(1)[0], False),
    "float64": (lambda: _valid_batch(1).astype(np.float64), False),
    "float16": (lambda: _valid_batch(1).astype(np.float16), False),
    "int64": (lambda: np.ones((1,) + SHAPE, np.int64), False),
    "python_list": (lambda: _valid_batch(1).tolist(), False),
    "complex": (lambda: _valid_batch(1) + 1j, True),
    "object": (lambda: _valid_batch(1).astype(object), True),
    "strings": (lambda: np.full((1,) + SHAPE, "a"), True),
    "bool": (lambda: np.ones((1,) + SHAPE, bool), True),
    "empty_batch": (lambda: np.zeros((0,) + SHAPE, np.float32), True),
    "nhwc": (lambda: np.zeros((1, SMALL_SIZE, SMALL_SIZE, 3), np.float32), True),
    "ndim5": (lambda: np.zeros((1, 1) + SHAPE, np.float32), True),
    "scalar": (lambda: np.float32(1.0), True),
    "none": (lambda: None, True),
    "nan": (lambda: np.full((1,) + SHAPE, np.nan, np.float32), True),
    "huge_finite": (lambda: np.full((1,) + SHAPE, 3e38, np.float32), False),  # must not give NaN silently
    "big_finite": (lambda: _valid_batch(1) * 1e18, False),
}
LAYERS = {"auto": False, "all": False, "feat": False, ("feat", "relu1"): False, ("feat", "feat"): False,
          (): True, None: False, 5: True, "nope": True, (None,): True, (5,): True, "": True, b"feat": True}
TARGETS = {None: False, 0: False, 9: False, 10: True, -1: True, 1.5: True, "3": True, (0,): False,
           True: True, "WEIGHTS": False, "NAN_WEIGHTS": True, "ZERO_WEIGHTS": False, "WRONG_WEIGHTS": True,
           "NESTED": True, "HUGE_INT": True}
METHODS = {"gradcam": False, "scorecam": False, "lrp": False, "eigencam": False, "relevancecam": False,
           "srmap": False, "cam": False, 5: True, None: True, "": True, "GRADCAM": True}
OPTIONS = {"none": ({}, False), "top_k0": ({"top_k": 0}, True), "top_k-1": ({"top_k": -1}, True),
           "top_k1.5": ({"top_k": 1.5}, True), "top_k_str": ({"top_k": "3"}, True),
           "top_k_big": ({"top_k": 10 ** 9}, False), "composite5": ({"composite": 5}, True),
           "composite_nope": ({"composite": "nope"}, True), "start_none": ({"start": None}, True),
           "unknown": ({"foo": 1}, True)}


def _target_value(key, n: int):
    if key == "WEIGHTS":
        return np.linspace(0, 1, SMALL_CLASSES).astype(np.float32)
    if key == "NAN_WEIGHTS":
        return np.full(SMALL_CLASSES, np.nan, np.float32)
    if key == "ZERO_WEIGHTS":
        return np.zeros(SMALL_CLASSES, np.float32)
    if key == "WRONG_WEIGHTS":
        return np.ones(SMALL_CLASSES + 1, np.float32)
    if key == "NESTED":
        return [[1, 2], [3]]
    if key == "HUGE_INT":
        return 2 ** 70
    if isinstance(key, tuple):
        return list(key)
    return key


def check_result(res) -> str | None:
    """A returned Result must hold finite logits and at least one finite map in [0, 1]."""
    if not hasattr(res, "maps"):
        return None
    if not res.maps:
        return "empty Result (no maps)"
    if not np.all(np.isfinite(res.logits)):
        return "non-finite logits returned"
    for name, m in res.maps.items():
        if m.size == 0:
            return f"empty map for {name}"
        if not np.all(np.isfinite(m)):
            return f"non-finite map for {name}"
        if m.min() < -1e-6 or m.max() > 1 + 1e-6:
            return f"map for {name} outside [0, 1]"
    for name, r in res.raw.items():
        if not np.all(np.isfinite(r)):
            return f"non-finite raw map for {name}"
    return None


def check_arrays(value) -> str | None:
    """Any returned dict/tuple of arrays must be finite and non-empty."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not v:
                return "empty result"
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, np.ndarray) and v.dtype.kind in "fc":
            if v.size == 0:
                return "empty array returned"
            if not np.all(np.isfinite(v)):
                return "non-finite array returned"
        elif isinstance(v, float) and not math.isfinite(v):
            return "non-finite number returned"
    return None


def _mostly(draw, default, values):
    """The default two times in three: a few odd values per call, so each one decides a case."""
    return draw(st.one_of(st.just(default), st.just(default), st.sampled_from(values)))


@st.composite
def explain_calls(draw) -> Plan:
    x_key = _mostly(draw, "valid", sorted(INPUTS))
    layers = _mostly(draw, "auto", list(LAYERS))
    target = _mostly(draw, None, list(TARGETS))
    method = _mostly(draw, "gradcam", list(METHODS))
    opt_key = _mostly(draw, "none", sorted(OPTIONS))
    build, bad_x = INPUTS[x_key]
    options, bad_opt = OPTIONS[opt_key]
    takes = {"scorecam": {"top_k"}, "lrp": {"composite", "start"}, "relevancecam": {"composite", "start"}}
    bad_opt = bad_opt or bool(set(options) - takes.get(method, set()))
    bad = bad_x or LAYERS[layers] or TARGETS[target] or METHODS[method] or bad_opt
    desc = f"explain(x={x_key}, method={method!r}, layers={layers!r}, target={target!r}, **{options!r})"

    def make(box: Sandbox) -> Case:
        def call():
            x = build()
            n = len(x) if isinstance(x, (list, np.ndarray)) and np.ndim(x) == 4 else 1
            lay = list(layers) if isinstance(layers, tuple) else layers
            return explainer().explain(x, method=method, layers=lay, target=_target_value(target, n), **options)
        return Case("api", desc, box.root, api=call, check_result=check_result,
                    if_accepted="silent_wrong" if bad else None)
    return Plan("api", desc, make)


EXPLAINER_ARGS = {
    "model=5": ({"model": 5}, True), "model=None": ({"model": None}, True),
    "model=bytes": ({"model": b"\x08\x07"}, True), "model=''": ({"model": ""}, True),
    "model=dir": ({"model": "DIR"}, True), "model=empty proto": ({"model": "EMPTY_PROTO"}, True),
    "model=list": ({"model": ["a"]}, True),
    "preprocess=[]": ({"preprocess": []}, True), "preprocess='x'": ({"preprocess": "x"}, True),
    "preprocess=5": ({"preprocess": 5}, True),
    "preprocess size=ab": ({"preprocess": {"size": "ab"}}, True),
    "preprocess mean len 2": ({"preprocess": {"mean": [1, 2]}}, True),
    "preprocess std 0": ({"preprocess": {"std": [0, 0, 0]}}, True),
    "preprocess scale nan": ({"preprocess": {"scale": float("nan")}}, True),
    "preprocess size 0": ({"preprocess": {"size": [0, 0]}}, True),
    "score=x": ({"score": "x"}, True), "score=None": ({"score": None}, True),
    "score=output": ({"score": "output"}, False),
    "memory nan": ({"memory_budget_mb": float("nan")}, True),
    "memory -1": ({"memory_budget_mb": -1}, True), "memory inf": ({"memory_budget_mb": float("inf")}, True),
    "max_batch 0": ({"max_batch": 0}, True), "max_batch -1": ({"max_batch": -1}, True),
    "max_batch 1.5": ({"max_batch": 1.5}, True), "max_batch '2'": ({"max_batch": "2"}, True),
    "providers 5": ({"providers": 5}, True), "providers bogus": ({"providers": ["Bogus"]}, True),
    "threads -1": ({"threads": -1}, True), "threads 0": ({"threads": 0}, False),
}


@st.composite
def explainer_calls(draw) -> Plan:
    key = draw(st.sampled_from(sorted(EXPLAINER_ARGS)))
    kwargs, bad = EXPLAINER_ARGS[key]
    desc = f"Explainer({key}) then explain gradcam"

    def make(box: Sandbox) -> Case:
        import onnx
        import onnxcam
        path = box.model_dir / "model.onnx"
        path.write_bytes(small_model_bytes())
        args = dict(kwargs)
        model = args.pop("model", str(path))
        model = {"DIR": str(box.model_dir), "EMPTY_PROTO": onnx.ModelProto()}.get(model, model) \
            if isinstance(model, str) else model

        def call():
            ex = onnxcam.Explainer(model, **args)
            return ex.explain(_valid_batch(2), method="gradcam")
        return Case("api", desc, box.root, api=call, check_result=check_result,
                    if_accepted="silent_wrong" if bad else None)
    return Plan("api", desc, make)


MAPS = {"valid": (lambda: np.random.default_rng(0).random((1, SMALL_SIZE, SMALL_SIZE)).astype(np.float32), False),
        "all_nan": (lambda: np.full((1, SMALL_SIZE, SMALL_SIZE), np.nan, np.float32), True),
        "one_nan": (lambda: np.where(np.eye(SMALL_SIZE, dtype=bool)[None], np.nan, 0.5).astype(np.float32), True),
        "inf": (lambda: np.full((1, SMALL_SIZE, SMALL_SIZE), np.inf, np.float32), True),
        "constant": (lambda: np.zeros((1, SMALL_SIZE, SMALL_SIZE), np.float32), False),
        "wrong_shape": (lambda: np.zeros((1, 7, 7), np.float32), True),
        "complex": (lambda: np.zeros((1, SMALL_SIZE, SMALL_SIZE), np.complex64), True),
        "empty": (lambda: np.zeros((0, SMALL_SIZE, SMALL_SIZE), np.float32), True)}


@st.composite
def metric_calls(draw) -> Plan:
    metric = draw(st.sampled_from(["average_drop_increase", "deletion_insertion", "road", "pointing_game",
                                   "load_images", "relevance", "activations_and_gradients"]))
    maps_key = draw(st.sampled_from(sorted(MAPS)))
    build, bad = MAPS[maps_key]
    extra = draw(st.sampled_from(["none", "steps0", "steps-1", "percent_nan", "boxes_nan", "paths_empty",
                                  "paths_none", "paths_int", "composite_bad", "layers_empty"]))
    uses_maps = metric in ("average_drop_increase", "deletion_insertion", "road", "pointing_game")
    relevant = {"deletion_insertion": ("steps0", "steps-1"), "road": ("percent_nan",), "pointing_game": ("boxes_nan",),
                "load_images": ("paths_empty", "paths_none", "paths_int"),
                "relevance": ("composite_bad", "layers_empty"), "activations_and_gradients": ("layers_empty",)}
    extra = extra if extra in relevant.get(metric, ()) else "none"
    desc = f"{metric}(" + ", ".join(([f"maps={maps_key}"] if uses_maps else []) +
                                    ([extra] if extra != "none" else [])) + ")"

    def make(box: Sandbox) -> Case:
        from onnxcam import metrics as M
        from onnxcam import load_images

        def call():
            ex, x = explainer(), _valid_batch(1)
            maps, t = build(), np.array([0])
            if metric == "average_drop_increase":
                return M.average_drop_increase(ex, x, maps, t)
            if metric == "deletion_insertion":
                steps = {"steps0": 0, "steps-1": -1}.get(extra, 4)
                return M.deletion_insertion(ex, x, maps, t, steps=steps)
            if metric == "road":
                pct = (float("nan"),) if extra == "percent_nan" else (10, 50)
                return M.road(ex, x, maps, t, percentages=pct)
            if metric == "pointing_game":
                boxes = [[(float("nan"), 0, 5, 5)]] if extra == "boxes_nan" else [[(2, 2, 20, 20)]]
                return M.pointing_game(maps, boxes=boxes)
            if metric == "load_images":
                paths = {"paths_empty": [], "paths_none": None, "paths_int": [5]}.get(extra, [box.image().name])
                return load_images([box.root / p if isinstance(p, str) else p for p in paths]
                                   if isinstance(paths, list) else paths, ex.preprocess)
            if metric == "relevance":
                comp = 5 if extra == "composite_bad" else "epsilon"
                layers = [] if extra == "layers_empty" else ["input", "feat"]
                return ex.relevance(x, layers, composite=comp)
            layers = [] if extra == "layers_empty" else ["feat"]
            return ex.activations_and_gradients(x, layers=layers)
        # the pointing game has no image size to hold a map to: a 7x7 map with its boxes is valid
        size_free = metric == "pointing_game" and maps_key == "wrong_shape"
        invalid = (uses_maps and bad and not size_free) or extra != "none"
        return Case("api", desc, box.root, api=call, check_result=check_arrays,
                    if_accepted="silent_wrong" if invalid else None)
    return Plan("api", desc, make)


def api_cases():
    return st.one_of(explain_calls(), explainer_calls(), metric_calls())
