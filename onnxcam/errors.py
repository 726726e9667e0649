"""The one exception users see, and third-party messages made short enough to read.

Every failure a user can cause (bad file, bad layer name, bad target, bad image) is raised as
`OnnxCamError` with one line that says what went wrong and how to fix it, so the CLI can print it
without a traceback from deep inside onnx or onnxruntime. The raw text of the library that failed
comes after our words, shortened by `first_line`: onnxruntime's messages carry its build's source
paths and C++ signatures, which say nothing to a user and used to fill the 300 characters we kept.
"""
from __future__ import annotations

import errno
import re


class OnnxCamError(Exception):
    """A user-facing error: one line, what happened and how to fix it."""


# "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : " and the IOBinding path's "Error in execution: "
_ORT_PREFIX = re.compile(r"^(?:\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*|Error in execution:\s*)+")
_ORT_NODE = re.compile(r"Non-zero status code returned while running (\S+) node\. Name:'(.*?)' "
                       r"Status Message:\s*(.*)", re.S)
# "/onnxruntime_src/onnxruntime/core/.../reshape_helper.h:91 onnxruntime::X::X(const T&, U&) "
_SOURCE = re.compile(r"(?:[\w.-]*/)*[\w.-]+\.(?:cc|cpp|cxx|h|hpp|cu|cuh):\d+:?\s*"
                     r"(?:(?:[\w:~<>*&,]+\s)*?[\w:~<>]+\([^()]*\)(?:\s*const)?\s+)?")
_FAILED_CHECK = re.compile(r"^[^.]*? was false\.\s*")   # ORT_ENFORCE's condition, e.g. "a == b was false."


_READ_CHARS = 2000


def ort_failure(text: str) -> tuple[str | None, str | None, str]:
    """(op, node name, message) of an onnxruntime error text, without its source locations.

    op and node are None when the text names no node (e.g. a failure to load the model)."""
    # the patterns below backtrack on long runs of path-like characters: only the head matters
    text = _ORT_PREFIX.sub("", text.strip()[:_READ_CHARS])
    op = node = None
    m = _ORT_NODE.search(text)
    if m:
        op, node, text = m.group(1), m.group(2), m.group(3)
    text = _FAILED_CHECK.sub("", _SOURCE.sub(" ", text).strip())
    lines = (" ".join(line.split()) for line in text.splitlines())
    return op, node, "\n".join(line for line in lines if line)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party exception, readable: onnx and onnxruntime raise C++ text
    blocks; onnxruntime's are reduced to the node, its op and the message without source paths."""
    return readable(str(exc), limit) or type(exc).__name__


def readable(text: str, limit: int = 300) -> str:
    """The first line of a third-party message (an exception's text, a child process's stderr)
    without C++ source locations, naming the onnxruntime node when there is one; "" if empty."""
    text = text.strip()
    if not text:
        return ""
    op, node, message = ort_failure(text)
    line = (message or text).splitlines()[0]
    if node is not None:
        line = f"node '{node}' ({op}): {line}"
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


# errno -> (what happened in words, what to do)
_OS_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free some space or choose another output folder"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose another output folder"),
    errno.EACCES: ("permission denied", "choose a folder you can write to"),
    errno.EPERM: ("the operation is not permitted", "choose a folder you can write to"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter output path"),
    errno.EISDIR: ("a folder is in the way", "remove it or choose another output path"),
    errno.ENOTDIR: ("a file is in the way where a folder should be", "remove it or choose another output path"),
    errno.EEXIST: ("a file is in the way where a folder should be", "remove it or choose another output path"),
    errno.ENOENT: ("a folder on the way does not exist or cannot be created here",
                   "choose an output folder in an existing, ordinary directory"),
    errno.EIO: ("the disk reported an input/output error", "check the disk or choose another output folder"),
    errno.EFBIG: ("the file is too large for the file system", "choose another output folder"),
    errno.EMFILE: ("too many files are open", "raise the open-file limit (ulimit -n)"),
    errno.ENFILE: ("too many files are open", "raise the open-file limit (ulimit -n)"),
}


def os_error(action: str, path, exc: OSError) -> OnnxCamError:
    """An OSError while writing, in words: '<action> <path>: <cause>; <fix> (<raw>)'."""
    cause, fix = _OS_CAUSES.get(exc.errno, ("the operating system refused", "choose another output folder"))
    raw = exc.strerror or first_line(exc)
    return OnnxCamError(f"cannot {action} {path}: {cause}; {fix} ({raw})")


def describe(value, limit: int = 60) -> str:
    """A user's value inside an error line: arrays by dtype and shape, anything else by its repr
    on one line, cut to `limit` characters."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"a {dtype} array of shape {tuple(shape)}"
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
