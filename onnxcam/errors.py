"""The one exception users see.

Every failure a user can cause (bad file, bad layer name, bad target, bad image) is raised as
`OnnxCamError` with one line that says what went wrong and how to fix it, so the CLI can print it
without a traceback from deep inside onnx or onnxruntime.
"""


class OnnxCamError(Exception):
    """A user-facing error: one line, what happened and how to fix it."""


def first_line(exc: Exception, limit: int = 300) -> str:
    """The first line of a third-party exception (onnx and onnxruntime raise C++ text blocks)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def describe(value, limit: int = 60) -> str:
    """A user's value inside an error line: arrays by dtype and shape, anything else by its repr
    on one line, cut to `limit` characters."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"a {dtype} array of shape {tuple(shape)}"
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
