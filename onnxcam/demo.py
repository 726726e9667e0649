"""`onnxcam demo`: the first minute. The bundled EfficientNet-Lite0 explains the bundled photos
with four methods side by side (HiResCAM, Score-CAM, Relevance-CAM at an intermediate and at the
last layer, SR map), one captioned montage per photo at the photo's resolution, then a short tour
of the commands to paste next."""
from __future__ import annotations

import shlex
from pathlib import Path

from . import bundled
from .figures import ImageFigures
from .output import check_targets, fresh_folder, write_png
from .preprocess import load_images

DEMO_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")   # one clear ImageNet object each
SCORECAM_TOP_K = 128   # Faster Score-CAM: the 128 channels of largest spatial variance (of 1280)


def intermediate_layer(ex):
    """The deepest preferred layer at twice the auto layer's resolution (14x14 for a 7x7 head):
    where Relevance-CAM is still sharp and already class-specific."""
    auto = ex.model.auto_layer
    finer = [layer for layer in ex.layers if layer.preferred and layer.height == 2 * auto.height]
    return finer[-1] if finer else auto


def run_demo(ex, out: str | None, overwrite: bool) -> int:
    found = {p.stem: p for p in bundled.photos()}
    paths = [found[name] for name in DEMO_PHOTOS if name in found] or list(found.values())
    out = Path(out) if out else fresh_folder(Path("onnxcam-demo"))
    targets = [out / f"{p.stem}_montage.png" for p in paths]
    check_targets(targets, overwrite)
    auto, mid = ex.model.auto_layer.name, intermediate_layer(ex).name
    print(f"model: {bundled.MODEL} ({ex.model.num_classes} classes, provider {ex.provider})")
    x, views, photos = load_images(paths, ex.preprocess, return_views=True, return_photos=True)
    hires = ex.explain(x, method="hirescam", layers=[auto])
    score = ex.explain(x, method="scorecam", layers=[auto], top_k=SCORECAM_TOP_K)
    rcam = ex.explain(x, method="relevancecam", layers=[mid, auto])
    sr = ex.explain(x, method="srmap")
    shown = [(hires, auto), (score, auto, f"top-{SCORECAM_TOP_K} channels"), (rcam, mid), (rcam, auto),
             (sr, sr.layers[0])]
    probs = ex.probabilities(hires.logits)
    for i, (path, target) in enumerate(zip(paths, targets)):
        fig = ImageFigures(ex, [hires, score, rcam, sr], i, views[i], photos[i], path.name)
        write_png(target, fig.montage(shown))
        top = probs[i].argsort()[::-1][:3]
        classes = ", ".join(f"{_name(ex, k)} {probs[i, k]:.2f}" for k in top)
        print(f"{path.name}: {classes}  -> {target}")
    print(f"output folder: {out}  (HiResCAM, Score-CAM top-{SCORECAM_TOP_K} channels, Relevance-CAM at "
          f"{mid} and {auto}, SR map)")
    print(_tour(paths))
    return 0


def _name(ex, k: int) -> str:
    return ex.labels[k] if ex.labels and k < len(ex.labels) else str(k)


def _tour(paths: list[Path]) -> str:
    """Paste-ready next steps (POSIX shell) on the bundled model and the two photos it classifies
    best: evaluate, export-explainer, compare (the last with the user's own quantized build)."""
    two = " ".join(f"$P/{p.name}" for p in paths[:2])
    return "\n".join([
        "next, paste into a shell:",
        f"  M={shlex.quote(str(bundled.MODEL))} P={shlex.quote(str(bundled.PHOTOS))}",
        f"  onnxcam evaluate $M {two} --methods hirescam,scorecam --out evaluated   # metrics + report.html",
        "  onnxcam export-explainer $M -o explainer.onnx   # one .onnx that returns logits + heatmap",
        f"  onnxcam compare $M YOUR_INT8_BUILD.onnx {two} --out compared   # does your build explain alike?",
    ])
