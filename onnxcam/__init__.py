"""onnxcam: explain exported CNN models from the .onnx file alone."""
from .errors import OnnxCamError
from .explainer import Explainer, Result
from .evaluate import evaluate  # noqa: E402  (the function; the module stays importable by path)
from .compare import compare  # noqa: E402  (likewise)
from .deploy import build_explainer_model, export_explainer
from .preprocess import PreprocessSpec, load_images, read_rgb
from .postprocess import overlay
from .mapback import scale_map, to_photo
from . import targets  # noqa: E402  (Segment, Embed, MultiLabel, Output, Classify)

__version__ = "0.1.0"
__all__ = ["Explainer", "Result", "OnnxCamError", "PreprocessSpec", "evaluate", "compare", "export_explainer",
           "build_explainer_model", "load_images", "read_rgb", "overlay", "scale_map", "to_photo", "targets",
           "__version__"]
