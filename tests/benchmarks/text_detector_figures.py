"""The README figures of the PP-OCR text detector (models/rapidocr_det), at the manifest's 736 px:
a montage of five methods at the DB head's input (Concat.3) on coffee.jpg with a printed label
(the photo tests/test_text_detector.py makes), Grad-CAM at the neck's four FPN branches with their
fused map, and the same photo without the label, where the detector finds "text" in the saucer
and table grain (a false positive worth explaining). Writes into OUT (default text_detector_figures/)
and prints each command's CLI equivalent.

    python tests/benchmarks/text_detector_figures.py [OUT]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import MODELS, PHOTOS  # noqa: E402
from test_text_detector import text_photo  # noqa: E402

from onnxcam.cli import main as cli  # noqa: E402

DET = MODELS / "rapidocr_det" / "PP-OCRv6_det_small.onnx"
BRANCHES = ["Add.191", "Add.199", "Add.207", "Add.215"]   # the FPN outputs at 1/32, 1/16, 1/8, 1/4


def run(args: list[str]) -> None:
    print("onnxcam " + " ".join(args))
    assert cli(args) == 0


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    photo = text_photo(out / "text_coffee.png")
    segment = ["--task", "segment", "--threshold", "0.3", "--overwrite"]
    run(["explain", str(DET), str(photo), *segment, "--layer", "Concat.3", "--method",
         "gradcam,hirescam,layercam,scorecam-pgc,relevancecam", "--top-k", "32", "--out", str(out / "methods")])
    run(["explain", str(DET), str(photo), *segment, "--method", "gradcam", "--layer", *BRANCHES, "--fuse",
         "--out", str(out / "fused")])
    run(["explain", str(DET), str(PHOTOS / "coffee.jpg"), *segment, "--layer", "Concat.3", "--method",
         "gradcam,hirescam,lrp", "--out", str(out / "no_text")])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "text_detector_figures"))
