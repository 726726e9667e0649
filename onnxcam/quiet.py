"""Keep native libraries' chatter off the user's terminal.

libpng, libjpeg and libtiff (inside OpenCV) and OpenCV's own logger write warnings such as
"Corrupt JPEG data: premature end of data segment" straight to file descriptor 2, beside or before
onnxcam's one `onnxcam: error:` line, so the user sees several lines where one was promised.
`captured_stderr` points fd 2 at a temporary file for the length of one native call and hands back
what was written, so the caller can fold it into its own message (or drop it when the call worked).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

from .errors import readable


class Captured:
    """What a native call wrote to stderr; `text` is set when the `with` block ends."""
    text = ""

    def first_line(self, limit: int = 160) -> str:
        """The first thing said, without OpenCV's log prefix or C++ source locations."""
        lines = [_LOG_PREFIX.sub("", line).strip() for line in self.text.splitlines() if line.strip()]
        return readable(lines[0], limit) if lines else ""


# OpenCV's logger: "[ WARN:0@0.351] global grfmt_tiff.cpp:811 readData ..." / "[ERROR:0@0.1] global ..."
_LOG_PREFIX = re.compile(r"^\[\s*[A-Z]+:[\d@.]+\]\s*(?:global\s+)?")


@contextlib.contextmanager
def captured_stderr():
    """Redirect fd 2 (not just sys.stderr: native code writes to the descriptor) into a temp file."""
    captured = Captured()
    try:
        sys.stderr.flush()
        sink = tempfile.TemporaryFile()
    except (OSError, ValueError):  # no temp file or no usable stderr: run the call uncaptured
        yield captured
        return
    with sink:
        try:
            saved = os.dup(2)
        except OSError:  # fd 2 is closed: nothing to protect
            yield captured
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read(64 * 1024).decode("utf-8", "replace")
