"""Command line: `onnxcam demo`, `layers`, `explain`, `evaluate`, `compare`, `export-explainer`.

Every OnnxCamError (and every argument argparse refuses) is printed as one line on stderr with
exit code 2; a failed `compare` gate exits 1 with its one-line verdict; Ctrl-C exits 130 with one
line; nothing is overwritten unless --overwrite is given. An unexpected exception is one line too,
asking for a report (ONNXCAM_DEBUG=1 prints its traceback): known failures are OnnxCamErrors.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from . import bundled, fusion, methods, smoothing
from .methods import attribution
from .compare import GATES, MAP_FLOOR, TOP1_FLOOR, compare
from .deploy import EXPORTABLE, export_explainer
from .errors import OnnxCamError, first_line
from .explainer import Explainer, Result
from .output import (check_folder, check_targets, fresh_folder, safe_name, unique_paths, write_json, write_npz,
                     write_png, write_text)
from .figures import AT, ImageFigures, Style
from .postprocess import COLORMAPS
from .files import read_json_object
from .preprocess import load_images
from .targets.from_args import add_task_flags, explainer_for_task, task_marks
from .dataset.from_args import (add_dataset_flags, compare_dataset, dataset_target, evaluate_dataset,
                                explain_dataset, image_paths, streams)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, where it has one worth saying (not None/False,
    and not already said in the help text); lists shown as they are typed."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".lstrip()


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors instead of a usage block, and every default
    shown in --help (subcommands are made with this class too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"onnxcam: error: {self.prog}: {message}; see {self.prog} --help\n")


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _add_preprocess_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (default: the model's manifest/sidecar, else ImageNet)")
    g.add_argument("--preprocess", metavar="JSON", help="a JSON file with the fields below")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"))
    g.add_argument("--mean", type=float, nargs="+")
    g.add_argument("--std", type=float, nargs="+")
    g.add_argument("--scale", type=float, help="multiplies 0..255 pixels before mean/std (default 1/255; "
                                               "16-bit and float files are first brought to 0..255)")
    g.add_argument("--channel-order", choices=["RGB", "BGR"])
    g.add_argument("--layout", choices=["NCHW", "NHWC"])
    g.add_argument("--resize", choices=["stretch", "center_crop", "letterbox"])
    g.add_argument("--channels", type=int, help="channels the model takes (default: read from the model)")
    g.add_argument("--grayscale", choices=["luma", "red", "green", "blue"],
                   help="how colour files become 1 channel (default luma, ITU-R BT.601)")
    g.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"),
                   help="map stored values CENTER-WIDTH/2 .. CENTER+WIDTH/2 to black..white (CT/X-ray)")


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--providers", nargs="+", help="onnxruntime providers (default: CUDA if usable, else CPU)")
    g.add_argument("--score", choices=["logits", "output"], default="logits",
                   help="explain the pre-softmax logits or the exported output")
    g.add_argument("--max-batch", type=_positive_int, default=64, help="most images per onnxruntime run")
    g.add_argument("--memory-budget-mb", type=_positive_float, default=1024,
                   help="batches are sized to stay under this much memory")


def _add_output_flags(p: argparse.ArgumentParser, what: str = "print a machine-readable summary") -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist")
    p.add_argument("--json", action="store_true", help=what)


def _reads_images(p: argparse.ArgumentParser, func) -> None:
    """The flags every command that explains image files shares, and its handler."""
    _add_output_flags(p)
    _add_preprocess_flags(p)
    _add_engine_flags(p)
    p.set_defaults(func=func)


def _add_labels_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", metavar="FILE", help="class names, one per line in class index order "
                                                    "(default: the file the model's sidecar names)")


def installed_version() -> str:
    """The installed distribution's version (package metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("onnxcam")
    except PackageNotFoundError:
        from . import __version__
        return __version__


def _add_method_flags(p: argparse.ArgumentParser, target: bool = True) -> None:
    if target:
        p.add_argument("--target", "--class", dest="target",
                       help="top1 (default), a class index or name (\"Egyptian cat\", as in the model's labels, "
                            "case-insensitive), or one per image: 3,7,1")
    p.add_argument("--top-k", type=_positive_int, help="Score-CAM: keep the k channels of largest spatial variance")
    p.add_argument("--composite", help="LRP: epsilon-plus-flat (default), epsilon-gamma-box, "
                                       "epsilon-alpha2-beta1, epsilon, zplus, attnlrp (the default on "
                                       "graphs with attention)")
    p.add_argument("--start", choices=["logit", "onehot", "contrastive"], help="LRP start relevance")
    p.add_argument("--path-steps", type=_positive_int, help="integrated-gradients: points on the path (default 32)")
    p.add_argument("--path-rule", choices=list(attribution.RULES),
                   help="integrated-gradients: quadrature (default gausslegendre)")
    p.add_argument("--path-baseline", choices=list(attribution.BASELINES),
                   help="integrated-gradients: where the path starts (default zero); deeplift: its "
                        "reference, zero or black")
    p.add_argument("--samples", type=_positive_int,
                   help="smoothgrad, vargrad, gradientshap, --smooth: noisy samples per image (default 16); sscam, "
                        "iscam: runs per channel (default 35, 10)")
    p.add_argument("--noise", type=_finite_float,
                   help="smoothgrad, vargrad, gradientshap, --smooth: noise stdev as a fraction of the image's value "
                        "range (default 0.15)")
    p.add_argument("--seed", type=_non_negative_int, help="random methods: the seed of their draws (default 0)")
    p.add_argument("--eigen-smooth", action="store_true",
                   help="CAM methods: the first principal component of the weighted activations instead of "
                        "their sum (pytorch-grad-cam's eigen_smooth)")
    p.add_argument("--aug-smooth", action="store_true",
                   help="any method: average the maps of the image flipped or not, scaled by 0.9/1/1.1 "
                        "(pytorch-grad-cam's aug_smooth; 6 runs)")
    p.add_argument("--smooth", choices=["grad", "var"],
                   help="any method but smoothgrad/vargrad/gradientshap/sscam/iscam: the mean (grad, "
                        "SmoothGrad) or variance (var, VarGrad) of its maps over --samples noisy copies "
                        "(--noise, --seed), as Captum's NoiseTunnel")
    p.add_argument("--noise-std", type=_finite_float, help="sscam: stdev of the noise added to each mask (default 2.0)")
    p.add_argument("--occlusion-window", type=_positive_int, metavar="PX",
                   help="occlusion: the square window's side in input pixels (default 1/8 of the shorter side)")
    p.add_argument("--occlusion-stride", type=_positive_int, metavar="PX",
                   help="occlusion: the window's step (default half the window)")
    p.add_argument("--masks", type=_positive_int, help="rise: random masks per image (default 1000)")
    p.add_argument("--groups", type=_positive_int, help="groupcam: channel groups, one mask each (default 32)")
    p.add_argument("--grid", type=_positive_int, help="rise: cells per side of a mask (default 7)")
    p.add_argument("--keep", type=_finite_float, help="rise: probability a cell is kept (default 0.5)")
    p.add_argument("--iterations", type=_positive_int,
                   help="aise: masks the DIRECT optimizer places per Gaussian width (3 widths; default 50)")


def _method_options(args) -> dict:
    given = {"top_k": args.top_k, "composite": args.composite, "start": args.start,
             "fuse": getattr(args, "fuse", None), "steps": args.path_steps,
             "rule": args.path_rule, "baseline": args.path_baseline, "samples": args.samples,
             "noise": args.noise, "noise_std": args.noise_std, "seed": args.seed, "window": args.occlusion_window,
             "stride": args.occlusion_stride, "masks": args.masks, "grid": args.grid, "keep": args.keep,
             "groups": args.groups, "smooth": args.smooth,
             "iterations": args.iterations}
    given |= {"eigen_smooth": args.eigen_smooth or None, "aug_smooth": args.aug_smooth or None}
    return {k: v for k, v in given.items() if v is not None}


def _spec_overrides(args) -> dict:
    spec = read_json_object(Path(args.preprocess), "preprocessing file") if args.preprocess else {}
    flags = {"size": args.size, "mean": args.mean, "std": args.std, "scale": args.scale,
             "channel_order": args.channel_order, "layout": args.layout, "resize": args.resize,
             "channels": args.channels, "grayscale": args.grayscale, "window": args.window}
    return spec | {k: v for k, v in flags.items() if v is not None}


def _explainer(model, args, preprocess=None, target=None) -> Explainer:
    return Explainer(model, providers=args.providers, preprocess=preprocess, score=args.score,
                     memory_budget_mb=args.memory_budget_mb, max_batch=args.max_batch,
                     labels=getattr(args, "labels", None), target=target,
                     progress=True)  # on stderr: a bar on a terminal, a status line every ~10 s elsewhere


def _label(ex: Explainer, k: int) -> str:
    return ex.labels[k] if ex.labels else str(k)


def top_classes(ex: Explainer, scores: np.ndarray, k: int = 5) -> list[list[dict]]:
    """The k highest scores per image; probability None where the score's columns are not classes
    (a segment's region sums, an embedding's similarity)."""
    probs = ex.probabilities(scores) if ex.model.class_scores else np.full(scores.shape, np.nan)
    out = []
    for row_p, row_s in zip(probs, scores):
        idx = np.argsort(-row_s)[:k]
        out.append([{"class": int(i), "name": _label(ex, int(i)), "score": float(row_s[i]),
                     "probability": None if np.isnan(row_p[i]) else float(row_p[i])} for i in idx])
    return out


def write_results(ex: Explainer, results: list[Result], images: list[Path], views, photos, out: Path,
                  overwrite: bool, style: Style = Style(), montage: bool = False, marks=None,
                  stems: list[str] | None = None, save=("overlays", "npz"), by_image: dict | None = None) -> list[Path]:
    """Per result: overlays per image and layer, a grid when several layers, guided pixel images,
    one .npz per image; with `montage`, one side-by-side picture per image of every result.
    Every target is checked before the first write. marks: None or one annotate.Marks per image
    (boxes, region outlines). stems: file-name stems per image (a dataset run's, unique and stable
    across runs; default: the image's stem, numbered when several); save: "overlays" and/or
    "npz"; by_image, if given, receives {(image, result index): [paths]}."""
    plan = []  # (path, image index, result index, what): a layer, "pixels:<layer>", "grid", "npz", "montage"
    pictures = "overlays" in save
    for i, img in enumerate(images):
        stem = stems[i] if stems else f"{i:02d}_{safe_name(img.stem)}" if len(images) > 1 else safe_name(img.stem)
        for r, res in enumerate(results):
            for layer in res.layers if pictures else ():
                plan.append((out / f"{stem}_{res.method}_{safe_name(layer)}.png", i, r, layer))
            for layer in res.pixels if pictures else ():
                plan.append((out / f"{stem}_{res.method}_{safe_name(layer)}_pixels.png", i, r, f"pixels:{layer}"))
            if len(res.layers) > 1 and pictures:
                plan.append((out / f"{stem}_{res.method}_grid.png", i, r, "grid"))
            if "npz" in save:
                plan.append((out / f"{stem}_{res.method}.npz", i, r, "npz"))
        if montage and pictures:
            plan.append((out / f"{stem}_montage.png", i, -1, "montage"))
    paths = unique_paths([(p, f"{i}:{r}:{what}") for p, i, r, what in plan])
    plan = [(path, i, r, what) for path, (_, i, r, what) in zip(paths, plan)]
    check_targets(paths, overwrite)
    figures = {}
    for path, i, r, what in plan:
        if i not in figures:
            figures = {i: ImageFigures(ex, results, i, views[i], photos[i], images[i].name, style,
                                       marks[i] if marks else None)}
        fig, res = figures[i], results[r]
        if what == "npz":
            write_npz(path, _arrays(res, i) | fig.arrays(res))
        elif what == "grid":
            write_png(path, fig.grid(res))
        elif what == "montage":
            write_png(path, fig.montage())
        elif what.startswith("pixels:"):
            write_png(path, fig.pixels(res, what[7:]))
        else:
            write_png(path, fig.tile(res, what))
        if by_image is not None:
            by_image.setdefault((i, r), []).append(path)
    return [p for p, _, _, _ in plan]


def _arrays(res: Result, i: int) -> dict:
    """What one image's .npz holds: logits, target, layers, and per layer j:
    raw_j   the method's raw map at the layer's (feature) resolution, unnormalized;
    map_j   the normalized map at the model's input resolution (the view the model saw), [0, 1];
    pixels_j  the pixel attribution [C, H, W] of guided methods, at the model's input resolution;
    near_kinks_j  gate units within rounding of their threshold (gradient methods).
    With the default --at photo, also (figures.ImageFigures.arrays):
    photo_map_j  map_j on the original photo's pixels [H, W], NaN where the model did not look
                 (outside a centre crop); float16 (3 significant digits are all a heatmap has, and
                 a 12-megapixel photo's map is 24 MB instead of 48 before compression);
    photo_hw     (H, W) of the photo; seen_box: the part of the photo the model saw,
                 (x0, y0, x1, y1) in photo pixels."""
    arrays = {"logits": res.logits[i], "target": np.int64(res.target[i]), "layers": np.array(res.layers)}
    for j, name in enumerate(res.layers):
        arrays[f"raw_{j}"] = res.raw[name][i]
        arrays[f"map_{j}"] = res.maps[name][i]
        if name in res.pixels:
            arrays[f"pixels_{j}"] = res.pixels[name][i]
        if name in res.near_kinks:  # gate units within rounding of their threshold (gradient methods)
            arrays[f"near_kinks_{j}"] = np.int64(res.near_kinks[name][i])
    return arrays


def cmd_layers(args) -> int:
    ex = _explainer(args.model, args)
    auto = ex.model.auto_layer
    if args.json:
        print(json.dumps([{"name": l.name, "op": l.op, "shape": list(l.shape), "depth": l.depth,
                           "layout": l.layout, "preferred": l.preferred, "auto": l == auto}
                          for l in ex.layers], indent=2))
        return 0
    width = max((len(l.name) for l in ex.layers), default=4)
    print(f"{'name':<{width}}  {'op':<18} {'C x h x w':<16} depth")
    for l in ex.layers:
        if not l.preferred and not args.all:
            continue
        mark = "  <- auto" if l == auto else ""
        print(f"{l.name:<{width}}  {l.op:<18} {'x'.join(map(str, l.shape)):<16} {l.depth}{mark}")
    for note in ex.model.notes:
        print(f"# {note}")
    return 0


def run_explain(ex: Explainer, images: list[Path], method, layers, target, out: Path,
                overwrite: bool, options: dict, style: Style = Style(), marks=None
                ) -> tuple[list[Result], list[Path], list]:
    """Explain the images with one method or several (a list: then one montage per image too),
    and write the results; the photos are read once, at full resolution."""
    check_folder(out)   # before the run: its results must have somewhere to go
    names = [method] if isinstance(method, str) else list(method)
    x, views, photos = load_images(images, ex.preprocess, return_views=True, return_photos=True)
    results = [ex.explain(x, method=m, layers=layers, target=target, **_options_for(m, options, names))
               for m in names]
    files = write_results(ex, results, images, views, photos, out, overwrite, style, montage=len(names) > 1,
                          marks=marks)
    return results, files, top_classes(ex, results[0].logits)


def _options_for(method: str, options: dict, names: list[str]) -> dict:
    """With several methods each gets the options it takes; an option none of them takes is
    passed on, so explain names it in its error instead of dropping it."""
    if len(names) == 1:
        return options
    taken = {o for n in names for o in methods.get(n).options}
    own = set(methods.get(method).options)
    if "smooth" in options:   # noise smoothing reads samples, noise and seed for every method
        own |= set(smoothing.NOISE_OPTIONS)
    return {k: v for k, v in options.items() if k in own or k not in taken}


def _summary(ex: Explainer, res: Result, images, files, tops) -> dict:
    return {"method": res.method, "provider": res.provider, "layers": res.layers,
            "images": [{"path": str(p), "target": int(t), "target_name": _label(ex, int(t)), "top5": top}
                       for p, t, top in zip(images, res.target, tops)],
            "files": [str(f) for f in files], "notes": res.notes,
            "near_kinks": {layer: [int(c) for c in counts] for layer, counts in res.near_kinks.items()},
            **({"conservation": {layer: [float(v) if np.isfinite(v) else None for v in kept]   # Σ R / start
                                 for layer, kept in res.conservation.items()}} if res.conservation else {})}


def cmd_explain(args) -> int:
    ex = explainer_for_task(args, lambda t: _explainer(args.model, args, _spec_overrides(args) or None, t))
    images = [Path(p) for p in args.images]
    target = _parse_target(args.target, ex.labels)
    options = _method_options(args)
    style = Style(args.at, args.colormap, args.alpha, args.shared_scale)
    if streams(args):   # a folder, glob or list file, or a dataset flag: stream into a Parquet index
        target = dataset_target(args, target)   # --task detect: detection K of each image, chosen per batch

        def write(results, items, views, photos, overwrite, save, marks=None) -> dict:
            found = {}
            write_results(ex, results, [it.path for it in items], views, photos, Path(args.out), overwrite, style,
                          montage=len(results) > 1, marks=marks, stems=[it.stem for it in items], save=save,
                          by_image=found)
            return found
        return explain_dataset(args, ex, target, {m: _options_for(m, options, args.method) for m in args.method},
                               write)
    images, target, marks = task_marks(args, ex, images, target)   # detect: the chosen detections; boxes
    results, files, tops = run_explain(ex, images, args.method, args.layer, target, Path(args.out),
                                       args.overwrite, options, style, marks)
    if len(results) == 1:   # one method: the summary as it always was
        summary = _summary(ex, results[0], images, files, tops)
    else:                   # several: one summary per method, the files (montages too) once
        summary = {"runs": [_summary(ex, r, images, [], tops) for r in results], "files": [str(f) for f in files]}
    if marks and any(m.info for m in marks):
        summary["detections"] = [m.info for m in marks]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for run in summary.get("runs", [summary]):
            _print_summary(run)
        for path, m in zip(images, marks or []):
            if m.caption:
                print(f"{path}: {m.caption}")
        print(f"wrote {len(summary['files'])} files to {args.out}")
    return 0


def _parse_target(text: str | None, labels: list[str] | None = None):
    """--target: None or "top1" -> None (each image's top-1), else one class or one per image
    (comma-separated), each an index or a name from the model's labels (case-insensitive, exact;
    the whole text is tried as one name first, for names that contain commas)."""
    if text in (None, "top1"):
        return None
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(labels or []):
        by_name.setdefault(name.strip().casefold(), []).append(i)
    whole = by_name.get(text.strip().casefold())
    values = [_class_of(part.strip(), by_name, labels) for part in text.split(",")] if whole is None \
        else [_only_class(text, whole)]
    return values[0] if len(values) == 1 else values


def _class_of(part: str, by_name: dict[str, list[int]], labels: list[str] | None) -> int:
    """One --target item: a class index, or the index of the class with this name."""
    try:
        return int(part)
    except ValueError:
        pass
    found = by_name.get(part.casefold())
    if found:
        return _only_class(part, found)
    takes = "--target takes top1, a class index or a class name, or one per image separated by commas"
    if not labels:
        raise OnnxCamError(f"{takes}; got {part!r}, and the model has no class names to look it up in: "
                           "give --labels FILE (one name per line) or a class index")
    close = difflib.get_close_matches(part.casefold(), list(by_name), n=4, cutoff=0.6)
    names = [labels[by_name[c][0]] for c in close]
    raise OnnxCamError(f"{takes}; {part!r} is none of the model's {len(labels)} class names"
                       + (f"; closest: {', '.join(repr(n) for n in names)}" if names else
                          "; see the label file for the names"))


def _only_class(name: str, indices: list[int]) -> int:
    if len(indices) > 1:
        raise OnnxCamError(f"--target {name!r} names {len(indices)} classes ({', '.join(map(str, indices))}); "
                           "give the index instead")
    return indices[0]


def _print_summary(summary: dict) -> None:
    print(f"method {summary['method']} on {summary['provider']}, layers: {', '.join(summary['layers'])}")
    for img in summary["images"]:
        print(f"{img['path']}: explaining class {img['target']} ({img['target_name']})")
        for t in img["top5"]:
            p = f"score {t['score']:.4g}" if t["probability"] is None else f"{t['probability']:6.3f}"
            print(f"   {t['class']:>5}  {p}  {t['name']}")
    for note in summary["notes"]:   # the model's and the method's (e.g. LRP's conserved fraction)
        print(f"# {note}")


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(_explainer(bundled.require(bundled.MODEL), args), args.out, args.overwrite)


def _method_names(text: str) -> list[str]:
    """--method: one method name or several separated by commas (gradcam,hirescam,scorecam)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in methods.REGISTRY]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0] if unknown else text!r}; choose one or "
                                         f"more (comma-separated) of {', '.join(sorted(methods.REGISTRY))}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a method is named twice in {text!r}; name each once")
    return names


def _colormap(text: str) -> str:
    if text.lower() not in COLORMAPS:
        raise argparse.ArgumentTypeError(f"unknown colormap {text!r}; choose one of {', '.join(COLORMAPS)}")
    return text.lower()


def _alpha(text: str) -> float:
    value = _finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 (photo only) to 1 (heatmap only), got {text!r}")
    return value


def _add_style_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pictures")
    g.add_argument("--at", choices=AT, default="photo",
                   help="draw overlays on the original photo, at its resolution (default), or on the "
                        "model's input view")
    g.add_argument("--colormap", type=_colormap, default="jet",
                   help=f"OpenCV colormap for unsigned maps (default jet): {', '.join(COLORMAPS)}")
    g.add_argument("--alpha", type=_alpha, default=0.5, help="heatmap weight over the photo, 0..1 (default 0.5)")
    g.add_argument("--shared-scale", action="store_true",
                   help="one colour scale for all layers/methods of an image (ReLU of the raw maps over "
                        "their common maximum) instead of each map's own min-max")


def cmd_evaluate(args) -> int:
    from .evaluate import checked_methods, evaluate, read_boxes
    from .report import render

    ex = explainer_for_task(args, lambda t: _explainer(args.model, args, _spec_overrides(args) or None, t))
    boxes = read_boxes(args.boxes) if args.boxes else None
    road_percentages = () if args.no_road else (10, 30, 50, 70, 90)
    target = _parse_target(args.target, ex.labels)
    if streams(args):   # a folder, glob or list file: streamed into a Parquet index, the report from it
        names = checked_methods(args.methods, args.steps, args.baseline)
        options = _method_options(args)
        return evaluate_dataset(args, ex, names, dataset_target(args, target),
                                {m: _options_for(m, options, names) for m in names}, boxes, road_percentages)
    args.images = image_paths(args.images)
    out = Path(args.out)
    targets = [out / "evaluation.json", out / "report.html"]
    check_targets(targets, args.overwrite)
    methods_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = {}
    options = _method_options(args)
    evaluation = evaluate(ex, args.images, methods_list, args.layers, boxes, args.steps, args.baseline,
                          options={m: _options_for(m, options, methods_list) for m in methods_list},
                          results=results, road_percentages=road_percentages,
                          sanity_steps=args.sanity, target=target)
    _, views = load_images(args.images, ex.preprocess, return_views=True)
    write_json(targets[0], evaluation)
    write_text(targets[1], render(evaluation, results, views, ex.labels))
    if args.json:
        print(json.dumps({m: {l: {k: v for k, v in r.items() if k not in ("curves", "per_image")}
                              for l, r in d["layers"].items()} for m, d in evaluation["methods"].items()}, indent=2))
    else:
        for m, d in evaluation["methods"].items():
            for l, r in d["layers"].items():
                print(f"{m:<14} {l[:40]:<40} drop {r['average_drop']:5.1f}  increase {r['increase_in_confidence']:5.1f}"
                      f"  deletion {r['deletion_auc']:.3f}  insertion {r['insertion_auc']:.3f}"
                      + (f"  ROAD {r['road_morf']:.3f}/{r['road_lerf']:.3f}" if "road_morf" in r else ""))
        for m, d in evaluation["methods"].items():
            for row in d.get("sanity", []):
                print(f"{m:<14} sanity: top {row['randomized_layers']} layers random: Spearman {row['spearman']:.2f}, "
                      f"SSIM {row['ssim']:.2f}" + ("  <- stays similar (flagged)" if row["stays_similar"] else ""))
        print(f"wrote {targets[0]} and {targets[1]}")
    return 0


def _parse_matches(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        ref, sep, cand = item.partition("=")
        if not sep or not ref or not cand:
            raise OnnxCamError(f"--match takes REF_LAYER=CANDIDATE_LAYER, got {item!r}")
        out[ref] = cand
    return out


def cmd_compare(args) -> int:
    from .report import fmt, render_comparison

    out = Path(args.out)
    targets = [out / "comparison.json", out / "report.html"]
    dataset = streams(args)   # a folder, glob or list file: streamed into a Parquet index, the report from it
    if not dataset:
        check_targets(targets, args.overwrite)
    target = _parse_target(args.target)
    engine = dict(score=args.score, memory_budget_mb=args.memory_budget_mb, max_batch=args.max_batch, progress=True)
    # the reference with the task's target (embed: its reference embedding); the candidate explains the same
    reference = explainer_for_task(args, lambda t: Explainer(args.reference, providers=args.providers,
                                                             preprocess=_spec_overrides(args) or None,
                                                             target=t, **engine))
    if dataset:
        return compare_dataset(args, reference, target, _method_options(args), _parse_matches(args.match), engine)
    args.images = image_paths(args.images)
    results = {}
    result = compare(reference, args.candidate, args.images, method=args.method, layers=args.layers,
                     match=_parse_matches(args.match), target=target, top_percent=args.top_percent,
                     fail_under=args.fail_under, top1_floor=args.top1_floor, gate=args.gate,
                     options=_method_options(args),
                     providers=args.providers, results=results, **engine)
    labels = results["labels"]
    write_json(targets[0], result)
    write_text(targets[1], render_comparison(result, results["reference"], results["candidate"],
                                             results["views"], labels, results["aspects"]))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "all_matches"}, indent=2))
    else:
        s = result["summary"]
        print(f"{result['method']}: {s['decision']} agreement {s['top1_agreement']:.{2 if s['per_pixel'] else 0}%}, "
              f"max |score change| {fmt(s['max_abs_score_delta'])}")
        for ref_layer, row in s["layers"].items():
            print(f"  {ref_layer} -> {row['candidate']}: Pearson {row['mean_pearson']:.3f} (min "
                  f"{row['min_pearson']:.3f}), Spearman {row['mean_spearman']:.3f}, IoU {row['mean_iou']:.3f}"
                  + (f", activations {fmt(row['activation_pearson'])}" if row["activation_pearson"] is not None else ""))
        print(f"wrote {targets[0]} and {targets[1]}")
    if "verdict" in result:
        # stdout on a pass, unless it carries --json (whose "verdict" holds the line); stderr on a fail
        print(f"onnxcam: {result['verdict']}", file=sys.stdout if result["passed"] and not args.json else sys.stderr)
        return 0 if result["passed"] else 1
    return 0


def cmd_export_explainer(args) -> int:
    ex = explainer_for_task(args, lambda t: _explainer(args.model, args, _spec_overrides(args) or None, t))
    path = export_explainer(ex, args.output, args.method, args.layer, args.target, args.overwrite)
    layer = ex.model.layer(args.layer).name
    print(f"wrote {path}: {args.method} at layer {layer}; input {ex.model.input_name!r} "
          f"({ex.model.layout} float32)" + (", target_class int64 [N]" if args.target == "input" else "")
          + f"; outputs logits [N, {ex.model.num_classes}]"
          + ("" if ex.model.class_scores else f" (the {args.task} score S)")
          + ", heatmap [N, H, W] in [0, 1], class [N]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxcam", description="Explain ONNX CNN classifiers.")
    p.add_argument("--version", action="version", version=f"onnxcam {installed_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="explain the bundled EfficientNet-Lite0 on a bundled photo")
    d.add_argument("--out", help="output folder (default: a new ./onnxcam-demo[-N])")
    d.add_argument("--overwrite", action="store_true")
    _add_engine_flags(d)
    d.set_defaults(func=cmd_demo)

    l = sub.add_parser("layers", help="print the layer catalog of a model")
    l.add_argument("model")
    l.add_argument("--all", action="store_true", help="also list tensors that feed an activation")
    l.add_argument("--json", action="store_true")
    _add_engine_flags(l)
    l.set_defaults(func=cmd_layers)

    e = sub.add_parser("explain", help="explain images with one method")
    e.add_argument("model")
    e.add_argument("images", nargs="+", help="image files, folders (recursive), globs (quoted: 'val/**/*.jpg') "
                                             "or list files (.txt: one path per line)")
    e.add_argument("--method", default="hirescam", type=_method_names,
                   help="a method, or several separated by commas (then one side-by-side montage per image "
                        f"too): {', '.join(sorted(methods.REGISTRY))}. HiResCAM: one gradient run, faithful to the score")
    e.add_argument("--layer", nargs="+", default=["auto"], help="auto, all, or layer names")
    e.add_argument("--fuse", nargs="?", const="mean", choices=fusion.HOWS,
                   help="with several layers, also write their fused map: mean (pytorch-grad-cam / "
                        "YOLO-CAM, the default) or max (LayerCAM's tanh-scaled element-wise max)")
    _add_method_flags(e)
    _add_style_flags(e)
    _add_labels_flag(e)
    add_task_flags(e)
    add_dataset_flags(e)
    _reads_images(e, cmd_explain)

    v = sub.add_parser("evaluate", help="faithfulness and localization metrics with an HTML report")
    v.add_argument("model")
    v.add_argument("images", nargs="+", help="image files, folders, globs or list files (.txt)")
    v.add_argument("--methods", default="gradcam,scorecam", help="comma-separated method names")
    v.add_argument("--layers", nargs="+", default=["auto"], help="auto, all, or layer names")
    v.add_argument("--boxes", help="JSON boxes file (see models/photos/boxes.json)")
    v.add_argument("--steps", type=_positive_int, default=50, help="deletion/insertion steps")
    v.add_argument("--baseline", choices=["zero", "blur", "mean"], default="zero")
    v.add_argument("--no-road", action="store_true", help="skip ROAD (MoRF/LeRF at 10..90 %%)")
    v.add_argument("--sanity", type=_positive_int, nargs="+", metavar="K",
                   help="also run the cascading randomization check with the top K layers random")
    v.add_argument("--target", "--class", dest="target",
                   help="top1 (default: or the task's class), a class index or name, or one per image: 3,7,1")
    _add_labels_flag(v)
    _add_method_flags(v, target=False)
    add_task_flags(v)
    add_dataset_flags(v, explain=False)
    _reads_images(v, cmd_evaluate)

    c = sub.add_parser("compare", help="do a deployed build's decisions and explanations agree with the "
                                       "reference's? (exit 1 when either is below its floor)")
    c.add_argument("reference", help="the reference .onnx (e.g. FP32)")
    c.add_argument("candidate", help="the build to check (FP16, INT8, re-export)")
    c.add_argument("images", nargs="+", help="image files, folders, globs or list files (.txt)")
    c.add_argument("--method", default="gradcam", choices=sorted(methods.REGISTRY))
    c.add_argument("--layers", nargs="+", default=["auto"], help="reference layers: auto, all, or names")
    c.add_argument("--match", nargs="+", metavar="REF=CAND",
                   help="override the structural layer matching for these reference layers")
    c.add_argument("--top-percent", type=_finite_float, default=20.0, help="region size for the IoU (default 20)")
    c.add_argument("--map-floor", "--fail-under", dest="fail_under", metavar="T", type=_finite_float,
                   default=MAP_FLOOR,
                   help=f"exit 1 when the mean map figure (--gate) is below this, in [-1, 1] (default {MAP_FLOOR})")
    c.add_argument("--top1-floor", metavar="T", type=_finite_float, default=TOP1_FLOOR,
                   help="exit 1 when the fraction of images whose top-1 class is unchanged is below this, in "
                        f"[0, 1] (default {TOP1_FLOOR}: on fewer than 100 images every image must keep its top-1; "
                        "0 gates on the maps only; --task multilabel: the set of labels on; --task segment: the "
                        "fraction of pixels whose class is unchanged)")
    c.add_argument("--gate", choices=GATES, default="pearson",
                   help="map figure the map floor checks: mean map Pearson (default), Spearman or top-k%% IoU")
    _add_method_flags(c)
    add_task_flags(c)
    add_dataset_flags(c, explain=False)
    _reads_images(c, cmd_compare)

    x = sub.add_parser("export-explainer", help="write a standalone ONNX model returning logits and the "
                                                "heatmap (runs wherever the model runs)")
    x.add_argument("model")
    x.add_argument("--method", default="gradcam", choices=sorted(EXPORTABLE))
    x.add_argument("--layer", default="auto")
    x.add_argument("--target", choices=["top1", "input"], default="top1",
                   help="explain each image's top-1 class (default) or take an int64 input target_class [N]")
    x.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    x.add_argument("--overwrite", action="store_true")
    add_task_flags(x, output_flag="--model-output")
    _add_preprocess_flags(x)
    _add_engine_flags(x)
    x.set_defaults(func=cmd_export_explainer)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:   # --help (0) or a refused argument (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except OnnxCamError as exc:
        print(f"onnxcam: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line, whatever it quotes
        return 2
    except KeyboardInterrupt:   # files being written were removed on the way out (output.py)
        print("onnxcam: interrupted; no partial files were left", file=sys.stderr)
        return 130
    except Exception as exc:   # a bug, not a user error: one line, the traceback on request
        if os.environ.get("ONNXCAM_DEBUG") == "1":
            traceback.print_exc()
        print(f"onnxcam: error: internal error: {type(exc).__name__}: {first_line(exc, 200)} (set ONNXCAM_DEBUG=1 for "
              "the traceback; please report it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
