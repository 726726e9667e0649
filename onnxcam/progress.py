"""Progress on stderr: a bar on a terminal, a status line every ~10 s anywhere else.

Written here rather than depending on tqdm: the runtime dependencies stay the field's own
(onnx, onnxruntime, numpy, OpenCV), and all we need is a count, a rate and an ETA.

A log file or a CI console cannot redraw a bar, and printing nothing there made a long run
(`--layer all` with full Score-CAM) look hung for minutes. So off a terminal each update may
write one plain line, at most one every STATUS_INTERVAL seconds across all bars of the process:
a fast run prints nothing, a slow one shows it is alive. A bar given `every` (a dataset run) also writes
a line each time `every` more items are done, so a log shows the count at a steady pace. A bar of
long steps (evaluate's metrics)
also says each step as it begins (`begin`), one line per step off a terminal. Progress never goes
to stdout (--json).
"""
from __future__ import annotations

import sys
import time

STATUS_INTERVAL = 10.0  # seconds between status lines off a terminal
_last_status: float | None = None  # shared by every bar (one line per interval, however many bars);
                                   # the clock starts with the first bar of the process


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, stream=None, every: int | None = None):
        self.total, self.label, self.done = max(int(total), 0), label, 0
        self.every = every if every and every > 0 else None
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.total > 0
        self.terminal = _is_terminal(self.stream)
        self.start = self.last = time.monotonic()
        self.drawn = False
        global _last_status
        if self.enabled and _last_status is None:
            _last_status = self.start

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0.0
        if self.terminal:
            if now - self.last > 0.2 or self.done >= self.total:
                self.last = now
                filled = int(30 * self.done / self.total)
                self._write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                            f"{self.done}/{self.total} {rate:.0f}/s eta {eta:.0f}s ")
                self.drawn = True
            return
        global _last_status
        crossed = self.every is not None and self.done // self.every > (self.done - n) // self.every
        if crossed or now - (_last_status if _last_status is not None else self.start) >= STATUS_INTERVAL:
            _last_status = now
            self._write(f"onnxcam: {self.label} {self.done}/{self.total} ({rate:.1f}/s, eta {eta:.0f}s)\n")

    def begin(self, step: str) -> None:
        """Say which long step starts (evaluate's metrics, each seconds to minutes): on a terminal
        the bar shows it, anywhere else one line per step, so a log shows where a run is even when
        no status interval has passed."""
        if not self.enabled:
            return
        text = f"{self.label} [{self.done + 1}/{self.total}] {step}"
        if self.terminal:
            self._write(f"\r{text[:110]:<110}")
            self.drawn = True
        else:
            self._write(f"onnxcam: {text}\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the run
            self.enabled = False

    def close(self) -> None:
        if self.enabled and self.drawn:
            self._write("\n")
            self.drawn = False   # closing twice (an interrupted run) ends the line once
