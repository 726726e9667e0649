"""Where the bundled model and photos live (the `models/` folder of the source checkout)."""
from __future__ import annotations

from pathlib import Path

from .errors import OnnxCamError

ROOT = Path(__file__).resolve().parent.parent / "models"
MODEL = ROOT / "efficientnet_lite0" / "model.onnx"
PHOTOS = ROOT / "photos"
DEMO_IMAGE = PHOTOS / "chelsea.jpg"


def require(path: Path) -> Path:
    if not path.exists():
        raise OnnxCamError(f"bundled file {path} is missing: onnxcam's bundled models ship with the "
                           "source checkout; install it with `pip install -e .` from the repository")
    return path
