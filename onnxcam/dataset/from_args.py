"""The command line of dataset runs: `explain`'s --save, --resume, --workers, --part-size,
--status-every, --engine, --address and --worker-gpus flags (evaluate and compare take the ones
that do not write files or leave the machine), the rule for when a run streams, and the printed
summaries of explain, evaluate and compare over a dataset.

Why here and not in cli.py: the CLI module is shared by every command; what a dataset run takes
and prints is this package's business, and cli.py only calls it.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import OnnxCamError
from .discover import expand_inputs, is_dataset
from .stream import parse_save, stream_explain


def add_dataset_flags(p: argparse.ArgumentParser, explain: bool = True) -> None:
    """The dataset flags; explain=False (evaluate, compare): the index only, on this machine
    (no --save, --engine, --address, --worker-gpus)."""
    g = p.add_argument_group("datasets (a folder, glob or list file streams into OUT/index/*.parquet)")
    if explain:
        g.add_argument("--save", metavar="WHAT", help="per-image files besides the index: overlays,npz (default), "
                                                      "overlays, npz or none; giving it streams plain files too")
    g.add_argument("--resume", action="store_true", help="skip the images OUT/index already holds")
    g.add_argument("--workers", type=_count, default=2,
                   help="threads decoding images ahead of the runs" + ("; with --engine ray, Explainer actors"
                                                                       if explain else ""))
    if explain:
        g.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="run on this machine, or on Ray Data (pip install \"onnxcam[ray]\"; index only)")
        g.add_argument("--address", help="--engine ray: the cluster to join (auto, ray://HOST:10001); "
                                         "default: a local one with --workers CPUs")
        g.add_argument("--worker-gpus", type=float, default=0, metavar="G",
                       help="--engine ray: GPUs per actor (default 0: one CPU each)")
    g.add_argument("--part-size", type=_count, default=256, metavar="IMAGES",
                   help="images per index part (a killed run loses at most one part)")
    g.add_argument("--status-every", type=_count, default=1000, metavar="IMAGES",
                   help="off a terminal, a progress line every this many images (and every ~10 s)")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def streams(args) -> bool:
    """A run streams when it names a dataset (folder, glob, list file) or asks for --save, --resume
    or --engine ray."""
    return is_dataset(args.images) or getattr(args, "save", None) is not None or args.resume \
        or getattr(args, "engine", "local") != "local"


def image_paths(names) -> list[Path]:
    """evaluate/compare: the image files that names (files, folders, globs, lists) cover."""
    return [item.path for item in expand_inputs(names)]


def explain_dataset(args, ex, target, options: dict, write_files) -> int:
    ray = args.engine == "ray"
    save = parse_save(args.save or ("none" if ray else "overlays,npz"))
    _refuse_resume_with_overwrite(args)
    if ray and save:
        raise OnnxCamError("--engine ray writes the index only (raw maps in it); pass --save none, or run "
                           "without --engine ray for overlays and npz files")
    if (args.address or args.worker_gpus) and not ray:
        raise OnnxCamError("--address and --worker-gpus are for --engine ray")
    if not (0 <= args.worker_gpus <= 64 and math.isfinite(args.worker_gpus)):
        raise OnnxCamError(f"--worker-gpus takes a number of GPUs per actor from 0 to 64, got {args.worker_gpus}")
    items = expand_inputs(args.images)
    if ray:
        from .ray_engine import ray_explain
        summary = ray_explain(ex, items, args.method, args.layer, target, options, Path(args.out), args.resume,
                              args.overwrite, args.address, args.workers, args.worker_gpus,
                              part_images=args.part_size, status_every=args.status_every)
    else:
        summary = stream_explain(ex, items, args.method, args.layer, target, options, Path(args.out), save,
                                 args.resume, args.overwrite, write_files, args.workers, args.part_size,
                                 args.status_every)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        done = f" ({summary['skipped_done']} already in the index)" if summary["skipped_done"] else ""
        bad = f"; {summary['errors']} could not be explained (the index's error column says why)" \
            if summary["errors"] else ""
        rate = summary["images_per_second"]
        print(f"explained {summary['explained']} of {summary['images']} images{done} with "
              f"{', '.join(summary['methods'])}" + (f" at {rate:.1f} images/s" if rate else "") + bad)
        for note in summary["notes"]:
            print(f"# {note}")
        print(f"wrote {summary['index']} ({summary['parts']} parts) and {summary['files']} files")
    return 0


def dataset_target(args, target):
    """The target of a dataset run: as given, or with --task detect the DetectionChoice of
    --detection K (one K; --box names a place in one photo, not in every image)."""
    if getattr(args, "task", None) != "detect":
        return target
    from ..targets.detections import CONF, IOU_NMS
    from ..targets.from_args import _detections
    from .choose import DetectionChoice

    if target is not None:
        raise OnnxCamError("--target names classes; with --task detect choose the detection with --detection K")
    if args.box is not None:
        raise OnnxCamError("--box names a place in one photo; a folder, glob or list run explains "
                           "--detection K of every image (default 0, the best)")
    ks = [0] if args.detection is None else _detections(args.detection)
    if len(ks) != 1:
        raise OnnxCamError(f"a folder, glob or list run explains one detection per image; give one "
                           f"--detection K, got {args.detection!r}")
    return DetectionChoice(ks[0], CONF if args.conf is None else args.conf, IOU_NMS if args.iou is None else args.iou)


def _refuse_resume_with_overwrite(args) -> None:
    if args.overwrite and args.resume:
        raise OnnxCamError("--resume continues a run and --overwrite starts it again; give one of them")


def evaluate_dataset(args, ex, methods: list[str], target, options: dict, boxes, road_percentages) -> int:
    """`onnxcam evaluate MODEL DIR --out OUT`: the streamed run into OUT/index, then OUT/evaluation.json
    (means with intervals, worst and best images) and OUT/report.html made from the whole index."""
    from ..report import picked_keys, render_dataset
    from ..output import write_json, write_text
    from .evaluate_run import dataset_evaluation, stream_evaluate
    from .picked import picked_maps

    _refuse_resume_with_overwrite(args)
    if args.sanity:
        raise OnnxCamError("--sanity re-runs the model with random weights on the images at once; run it on a "
                           "few image files, not on a folder, glob or list")
    out = Path(args.out)
    run = stream_evaluate(ex, expand_inputs(args.images), methods, args.layers, target, options, out, args.steps,
                          args.baseline, road_percentages, boxes, args.resume, args.overwrite, args.workers,
                          args.part_size, args.status_every)
    evaluation = dataset_evaluation(ex, out, run)
    maps, _, views, classes = picked_maps(ex, out / "index", picked_keys(evaluation))
    write_json(out / "evaluation.json", evaluation)
    write_text(out / "report.html", render_dataset(evaluation, views, maps, classes))
    if args.json:
        print(json.dumps({k: v for k, v in evaluation.items() if k != "histograms"}, indent=2))
        return 0
    done = f" ({run['skipped_done']} already in the index)" if run["skipped_done"] else ""
    print(f"evaluated {run['explained']} of {run['images']} images{done}; means over {evaluation['images'] - evaluation['errors']} "
          f"images with the {evaluation['interval']['level']:.0%} bootstrap interval:")
    for g in evaluation["groups"]:
        figures = "  ".join(f"{name} {f['mean']:.3g} [{f['low']:.3g}, {f['high']:.3g}]"
                            for name, f in g["metrics"].items() if name != "pointing_hit")
        print(f"{g['method']:<14} {g['layer'][:40]:<40} {figures}")
    if run["errors"]:
        print(f"# {run['errors']} images could not be explained (the index's error column says why)")
    print(f"wrote {out / 'evaluation.json'}, {out / 'report.html'} and {run['index']} ({run['parts']} parts)")
    return 0


def compare_dataset(args, reference, target, options: dict, match: dict, engine: dict) -> int:
    """`onnxcam compare REF CAND DIR --out OUT`: the streamed run into OUT/index, then the gate on
    every image, OUT/comparison.json and OUT/report.html made from the whole index. Exit 1 when a
    floor fails, as a run on image files."""
    import sys

    from ..compare import nonfinite_allowed, open_builds
    from ..output import write_json, write_text
    from ..report import picked_keys, render_dataset_comparison
    from .compare_run import dataset_comparison, stream_compare
    from .picked import picked_maps

    _refuse_resume_with_overwrite(args)
    if args.task == "detect":
        raise OnnxCamError("compare --task detect matches the detections of image files; a folder, glob or "
                           "list run does not yet: name image files")
    out = Path(args.out)
    ref, cand = open_builds(reference, args.candidate, args.providers, None, None, args.gate, args.top_percent,
                            args.fail_under, args.top1_floor, engine)
    with nonfinite_allowed(cand):
        run = stream_compare(ref, cand, expand_inputs(args.images), args.method, args.layers, match or None, target,
                             args.top_percent, args.gate, options, out, args.resume, args.overwrite, args.workers,
                             args.part_size, args.status_every)
    result = dataset_comparison(ref, cand, out, run, args.method, args.fail_under, args.top1_floor)
    cand_maps, ref_maps, views, classes = picked_maps(ref, out / "index", picked_keys(result["figures"]))
    write_json(out / "comparison.json", result)
    write_text(out / "report.html", render_dataset_comparison(result, views, ref_maps, cand_maps, classes))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "figures"}, indent=2))
    else:
        done = f" ({run['skipped_done']} already in the index)" if run["skipped_done"] else ""
        s = result["summary"]
        print(f"compared {run['explained']} of {run['images']} images{done} with {args.method}: "
              f"{s['decision']} agreement {s['top1_agreement']:.{2 if s['per_pixel'] else 1}%}")
        for g in result["figures"]["groups"]:
            line = "  ".join(f"{k} {f['mean']:.3f} [{f['low']:.3f}, {f['high']:.3f}]"
                             for k, f in g["metrics"].items() if k in ("pearson", "spearman", "iou"))
            print(f"  {g['layer']}: {line}")
        print(f"wrote {out / 'comparison.json'}, {out / 'report.html'} and {run['index']} ({run['parts']} parts)")
    if "verdict" in result:
        print(f"onnxcam: {result['verdict']}", file=sys.stdout if result["passed"] and not args.json else sys.stderr)
        return 0 if result["passed"] else 1
    return 0
