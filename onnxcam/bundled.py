"""Where the bundled model and photos live: onnxcam/data/ inside the package, so they ship in the
wheel (package data) and `onnxcam demo` works from any install. The source checkout's
models/efficientnet_lite0 and models/photos are links to the same folders. Their licence notes
(LICENSE-NOTE.md, NOTE.md) sit beside the files."""
from __future__ import annotations

from pathlib import Path

from .errors import OnnxCamError

ROOT = Path(__file__).resolve().parent / "data"
MODEL = ROOT / "efficientnet_lite0" / "model.onnx"
PHOTOS = ROOT / "photos"
DEMO_IMAGE = PHOTOS / "chelsea.jpg"


def require(path: Path) -> Path:
    if not path.exists():
        raise OnnxCamError(f"bundled file {path} is missing: this onnxcam install is incomplete; "
                           "reinstall it (pip install --force-reinstall onnxcam, or pip install . from the repository)")
    return path


def photos() -> list[Path]:
    """The bundled photos, sorted by name."""
    return sorted(require(PHOTOS).glob("*.jpg"))
