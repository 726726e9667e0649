"""AttnLRP parity figures quoted in README (Transformers): onnxcam's attnlrp composite on timm exports
vs lxt on the same random-init weights (biases perturbed, as tests/test_attnlrp.py does).

For vit_tiny_patch16_224, deit_tiny_distilled_patch16_224 (class and distillation tokens) and
swin_tiny_patch4_window7_224 (windows, relative position bias, shift masks; its patch merging needs
the Slice backward of strided slices of the vit branch) and mobilevit_xxs (convolutions with
BatchNorm and SiLU around transformer blocks), each through both torch.onnx exporters (and ViT
through dynamo at opset 23 too, "dynamo23": one ONNX Attention op per block):
Pearson of the input relevance per image (min over the bundled photos), the largest difference of
Σ R at a LayerNorm input (the residual stream at every block boundary) as a fraction of Σ|R|
there, and the time of one onnxcam AttnLRP pass and of lxt's (forward + backward) on one image,
best of --repeat (a shared machine: ratios only).
Writes docs/img/attnlrp_parity.png: two photos, onnxcam's and lxt's relevance side by side.

    python tests/benchmarks/attnlrp_parity.py [--repeat 3]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchtools import PHOTOS, ROOT, parse_args, print_table

import onnxcam  # noqa: E402
from onnxcam.output import write_png  # noqa: E402
from onnxcam.postprocess import colorize, signed_scale  # noqa: E402
from onnxcam.render import montage  # noqa: E402
from test_attnlrp import (_export, _lxt_attnlrp, _lxt_relevance, _stream_and_softmax, _timm_vit,  # noqa: E402
                          attnlrp_relevances)

FIGURE = ROOT / "docs" / "img" / "attnlrp_parity.png"


def _best(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    args = parse_args(__doc__)
    rows, tiles, captions = [], [], []
    tmp = Path(tempfile.mkdtemp())
    both = ("torchscript", "dynamo")
    for arch, exporters in (("vit_tiny_patch16_224", both + ("dynamo23",)), ("deit_tiny_distilled_patch16_224", both),
                            ("swin_tiny_patch4_window7_224", both), ("mobilevit_xxs", both)):
        for exporter in exporters:
            model = _timm_vit(arch, perturb=True)
            ex = onnxcam.Explainer(_export(model, tmp / f"{arch}_{exporter}.onnx", exporter))
            x = onnxcam.load_images(PHOTOS, ex.preprocess)
            targets = ex.forward(x)[0].argmax(1)
            stream, _ = _stream_and_softmax(ex)
            try:
                _, rel = attnlrp_relevances(ex, x, [ex.model.input_name] + stream, targets.tolist())
            except onnxcam.OnnxCamError as exc:   # e.g. Swin without the strided Slice backward
                rows.append([arch, exporter, f"fails: {exc}", "", "", ""])
                continue
            lxt_model = _lxt_attnlrp(model)
            ref, ref_sums = _lxt_relevance(lxt_model, x, targets)
            ours = rel[ex.model.input_name]
            pearson = [float(np.corrcoef(ours[i].ravel(), ref[i].ravel())[0, 1]) for i in range(len(x))]
            block = max([float((np.abs(rel[n].reshape(len(x), -1).sum(1) - s)
                               / np.abs(rel[n]).reshape(len(x), -1).sum(1)).max())
                         for n, s in zip(stream, ref_sums)] if len(stream) == len(ref_sums) else [np.nan])
            one = x[:1]
            ours_s = _best(lambda: ex.relevance(one, ["input"], "attnlrp", target=int(targets[0])), args.repeat)
            lxt_s = _best(lambda: _lxt_relevance(lxt_model, one, targets[:1]), args.repeat)
            rows.append([arch, exporter, f"{min(pearson):.8f}", f"{block:.1e}", f"{ours_s * 1000:.0f}",
                         f"{lxt_s * 1000:.0f}"])
            if arch.startswith("vit") and exporter == "torchscript":
                for i in (1, 2):
                    for name, r in (("onnxcam attnlrp", ours[i]), ("lxt", ref[i])):
                        tiles.append(colorize(0.5 + 0.5 * signed_scale(r.sum(0)), diverging=True))
                        captions.append([f"{PHOTOS[i].stem}: {name}", f"Pearson {pearson[i]:.5f}"])
    print_table("AttnLRP: onnxcam vs lxt, same random-init weights (biases perturbed)",
                ["model", "exporter", "Pearson (min over photos)", "Σ R at LayerNorm inputs: largest diff / Σ|R|",
                 "onnxcam ms", "lxt ms"], rows)
    picture = montage(tiles, captions, title=["AttnLRP input relevance, random-init ViT-Tiny (TorchScript "
                                              "export): onnxcam vs lxt"], cols=4)
    write_png(FIGURE, picture)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
