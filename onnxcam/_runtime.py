"""Import onnxruntime with an actionable message when it is missing or installed twice."""
from __future__ import annotations

from importlib import metadata

from .errors import OnnxCamError


def installed_runtimes() -> list[str]:
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            found.append(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise OnnxCamError("onnxruntime is not installed: pip install 'onnxcam[cpu]' "
                           "(or 'onnxcam[gpu]' for CUDA)") from None
    return onnxruntime


def runtime_warning() -> str | None:
    """A note when both onnxruntime and onnxruntime-gpu are installed (CUDA then breaks)."""
    if len(installed_runtimes()) > 1:
        return ("both onnxruntime and onnxruntime-gpu are installed; they share one module and CUDA "
                "may not load: pip uninstall onnxruntime onnxruntime-gpu, then install one of them")
    return None
