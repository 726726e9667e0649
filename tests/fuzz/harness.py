"""Run one fuzz case and put its outcome in exactly one category.

onnxcam promises that every hostile input ends in one `onnxcam: error: ...` line (exit 2), that
nothing hangs, nothing is read from outside the model's folder, nothing is lost, and that exit 0
means finite, non-empty results. This module checks that promise for one case at a time:

- ok: exit 0 with valid, finite outputs (or exit 1 with the one-line verdict of a `compare` gate)
- refused: exit 2 with exactly one stderr line `onnxcam: error: ...`, no raw onnxruntime source path
  (API: `OnnxCamError` with a one-line message)
- crash: killed by a signal, or an exit code other than 0/1/2/130
- hang: the time limit passed
- escape: the canary's secret (a file planted outside the model's folder) showed up in the output,
  or a case that names a file outside the folder was accepted
- silent_wrong: exit 0 but NaN/Inf in a written .npz/.json, an empty result, an out-of-range
  argument accepted, two outputs written to one file name, or a memory blow-up
- traceback: a Python traceback, or more than one line on stderr, or an error line carrying raw
  third-party source paths (API: any exception other than OnnxCamError)
- lost: a file that existed was changed without --overwrite, or a temporary file was left behind

CLI cases run in a subprocess with a time limit and an address-space limit (so an OOM is a crash of
the child, not of the machine); API cases run in-process.
"""
from __future__ import annotations

import json
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = ("ok", "refused", "crash", "hang", "escape", "silent_wrong", "traceback", "lost")
FAILURES = CATEGORIES[2:]
ERROR_PREFIX = "onnxcam: error: "
GATE_PREFIX = "onnxcam: FAIL: "
# a raw C++ source path (onnxruntime's '/onnxruntime_src/...', onnx's '/project/onnx/...cc:76')
# onnxcam/progress.py off a terminal: a status line ("label 3/9 (2.0/s, eta 3s)") every ~10 s, and
# one line per long step ("label [2/9] step"); progress, not a second error line
PROGRESS_LINE = re.compile(r"^onnxcam: (?!error:|internal error|FAIL|PASS).*(\d+/\d+ \([\d.]+/s, eta \d+s\)|\[\d+/\d+\] .+)$")
RAW_SOURCE_PATH = re.compile(r"/onnxruntime_src/|/[\w.-]+/[\w./-]*\.(cc|cpp|cxx|h|hpp)(:\d+)?\b")
MEMORY_LIMIT = 4 << 30          # RLIMIT_AS of every CLI child
RSS_LIMIT_MB = 1500             # peak RSS above this on a small-model case is a blow-up


@dataclass
class Case:
    """One thing to try. Either `argv` (CLI, after `onnxcam`) or `api` (a call made in-process)."""
    family: str
    description: str
    cwd: Path
    argv: list[str] | None = None
    api: Callable[[], Any] | None = None
    out: Path | None = None              # output folder (or file) whose contents are checked
    writes: bool = True                  # exit 0 must have written something under `out`
    protected: dict = field(default_factory=dict)   # path -> bytes that must stay as they are
    if_accepted: str | None = None       # category when the case exits 0 (an invalid value taken)
    secret: str | None = None            # canary text that must never appear in any output
    timeout: float = 60.0
    interrupt_after: float | None = None  # send SIGINT once the child has used this much CPU time
                                          # (not wall time: on a loaded machine it is still importing)
    silence: float | None = None         # a hang too: this long without a byte on stdout/stderr
    fsize_limit: int | None = None       # RLIMIT_FSIZE (a full disk, as the child sees it)
    rss_limit_mb: float = RSS_LIMIT_MB
    check_result: Callable[[Any], str | None] | None = None  # API: problem with a returned value


@dataclass
class Outcome:
    category: str
    detail: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def failed(self) -> bool:
        return self.category in FAILURES


def snapshot(paths) -> dict:
    """The bytes of existing files that must survive a run unchanged."""
    return {Path(p): Path(p).read_bytes() for p in paths if Path(p).is_file()}


# ----------------------------------------------------------------------------- CLI cases
def cli_command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "onnxcam.cli", *argv]


def shell_command(case: Case) -> str:
    """A command line that reproduces a CLI case from its folder (for reports)."""
    import shlex
    return f"cd {shlex.quote(str(case.cwd))} && PYTHONPATH={REPO} onnxcam " + " ".join(
        shlex.quote(a) for a in case.argv or [])


def _limits(fsize: int | None):
    def apply():
        # a background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
        # the child gets the default, as a command typed in a terminal does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "HYPOTHESIS"))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env


def _run_child(case: Case) -> tuple[int | None, bytes, bytes, float, float]:
    """(returncode or None on timeout, stdout, stderr, seconds, peak RSS MB)."""
    start = last_output = time.monotonic()
    proc = subprocess.Popen(cli_command(case.argv), cwd=case.cwd, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limits(case.fsize_limit),
                            start_new_session=True)  # a hang is killed with all it started
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    fds = {out_fd: [], err_fd: []}
    sel = selectors.DefaultSelector()
    for fd in fds:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    rusage = None
    interrupted = False
    peak_mb = 0.0
    while True:
        now = time.monotonic() - start
        peak_mb = max(peak_mb, _high_water_mb(proc.pid))
        if case.interrupt_after is not None and not interrupted and _cpu_seconds(proc.pid) >= case.interrupt_after:
            _signal(-proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
            interrupted = True
        quiet = time.monotonic() - last_output
        if now > case.timeout or (case.silence is not None and quiet > case.silence):
            _signal(-proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            break
        for key, _ in sel.select(timeout=0.05):
            got = _read_into(key.fd, fds[key.fd])
            if got is False:
                sel.unregister(key.fd)
            elif got:
                last_output = time.monotonic()
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            rusage = usage
            proc.returncode = os.waitstatus_to_exitcode(status)
            for fd in fds:  # drain what is left in the pipes
                while _read_into(fd, fds[fd]) is True:
                    pass
            break
    seconds = time.monotonic() - start
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    _signal(-proc.pid, signal.SIGKILL)  # anything the child left running in its group
    timed_out = rusage is None
    # not rusage.ru_maxrss: Linux carries the forking parent's RSS into an exec'd child's figure,
    # so a child of a 3 GB test process would report 3 GB whatever it used itself
    rss = peak_mb
    return (None if timed_out else proc.returncode, b"".join(fds[out_fd]),
            b"".join(fds[err_fd]), seconds, rss)


def _high_water_mb(pid: int) -> float:
    """The process's own peak resident memory so far (VmHWM, reset at exec), in MB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc; 0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_into(fd: int, chunks: list) -> bool | None:
    """Read what a pipe holds now: True (read some), None (nothing yet), False (end of file)."""
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return False
    if data:
        chunks.append(data)
    return bool(data)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_cli(case: Case) -> Outcome:
    rc, out, err, seconds, rss = _run_child(case)
    outcome = classify_cli(case, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), rss)
    outcome.returncode, outcome.seconds, outcome.peak_rss_mb = rc, seconds, rss
    if outcome.category == "hang" and case.silence is not None and seconds < case.timeout:
        outcome.detail = f"no output for {case.silence:.0f} s"
    return outcome


def classify_cli(case: Case, rc: int | None, stdout: str, stderr: str, rss_mb: float = 0.0) -> Outcome:
    """The one category of a finished (or timed-out) CLI run."""
    if case.secret and (case.secret in stdout or case.secret in stderr or _secret_in_files(case)):
        return Outcome("escape", "the canary's secret appears in the output")
    if rc is None:
        return Outcome("hang", f"no exit within {case.timeout:.0f} s")
    interrupted = case.interrupt_after is not None
    if rc < 0 and not (interrupted and rc == -signal.SIGINT):
        return Outcome("crash", f"killed by signal {signal.Signals(-rc).name}")
    if rc not in (0, 1, 2, 130) and not (interrupted and rc == -signal.SIGINT):
        return Outcome("crash", f"exit code {rc}" + _last_line(stderr))
    lost = _lost(case, rc)
    if lost:
        return Outcome("lost", lost)
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    if "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", _exception_line(lines))
    if interrupted and rc != 0:
        if rc != 130:
            return Outcome("traceback", f"Ctrl-C gave exit {rc}, not 130" + _last_line(stderr))
        if lines and not lines[-1].startswith("onnxcam: "):
            return Outcome("traceback", f"Ctrl-C: the last stderr line is not onnxcam's: {lines[-1][:120]!r}")
        return Outcome("refused", "interrupted: exit 130" + (f", {lines[-1][:120]}" if lines else ""))
    if rc == 0:
        problem = _output_problem(case, stdout)
        if problem:
            return Outcome("silent_wrong", problem)
    if len(lines) > 1:
        return Outcome("traceback", f"{len(lines)} lines on stderr: {lines[0][:120]!r}")
    if rc == 2:
        if not lines or not lines[0].startswith(ERROR_PREFIX):
            return Outcome("traceback", f"exit 2 without an '{ERROR_PREFIX.strip()}' line: {stderr[:120]!r}")
        if RAW_SOURCE_PATH.search(lines[0]):
            return Outcome("traceback", f"raw source path in the error line: {lines[0][:160]}")
        return Outcome("refused", lines[0][len(ERROR_PREFIX):][:200])
    if rc == 1:
        if len(lines) == 1 and lines[0].startswith(GATE_PREFIX):
            return _check_accepted(case, stdout, rss_mb, gate=lines[0])
        return Outcome("traceback", "exit 1 without a gate verdict" + _last_line(stderr))
    if rc == 130:
        return Outcome("traceback", "exit 130 without Ctrl-C")
    return _check_accepted(case, stdout, rss_mb, stderr_line=lines[0] if lines else None)


def _check_accepted(case: Case, stdout: str, rss_mb: float, gate: str | None = None,
                    stderr_line: str | None = None) -> Outcome:
    """Exit 0 (or a failed gate): the outputs must be valid, and the input must have been valid."""
    problem = _output_problem(case, stdout)
    if problem:
        return Outcome("silent_wrong", problem)
    if rss_mb > case.rss_limit_mb:
        return Outcome("silent_wrong", f"peak RSS {rss_mb:.0f} MB > {case.rss_limit_mb:.0f} MB")
    if case.if_accepted:
        return Outcome(case.if_accepted, "accepted: " + case.description)
    if stderr_line and case.interrupt_after is None:
        return Outcome("ok", f"warning on stderr: {stderr_line[:120]}")
    return Outcome("ok", gate or "")


def _secret_in_files(case: Case) -> bool:
    for path in _written(case):
        try:
            if case.secret.encode() in path.read_bytes():
                return True
        except OSError:
            pass
    return False


def _written(case: Case) -> list[Path]:
    if case.out is None or not case.out.exists():
        return []
    if case.out.is_file():
        return [case.out]
    return [p for p in case.out.rglob("*") if p.is_file() and _new_or_changed(case, p)]


def _new_or_changed(case: Case, path: Path) -> bool:
    """Files the run wrote: not there before, or replaced (with --overwrite)."""
    if path not in case.protected:
        return True
    try:
        return path.read_bytes() != case.protected[path]
    except OSError:
        return True


def _lost(case: Case, rc: int) -> str | None:
    overwrite = bool(case.argv and "--overwrite" in case.argv)
    for path, data in case.protected.items():
        if overwrite and rc == 0:
            continue
        try:
            now = path.read_bytes() if path.is_file() else None
        except OSError:
            now = None
        if now != data:
            return f"existing file {path.name} was {'changed' if now is not None else 'removed'}"
    if case.out is not None and case.out.is_dir():
        temps = [p.name for p in case.out.rglob("*") if p.name.endswith(".tmp")]
        if temps:
            return f"temporary file left in the output folder: {temps[0]}"
    return None


def _output_problem(case: Case, stdout: str) -> str | None:
    files = _written(case)
    if case.writes and case.out is not None and not files:
        return "exit 0 but nothing was written"
    for path in files:
        problem = _file_problem(path)
        if problem:
            return f"{path.name}: {problem}"
    if stdout.lstrip().startswith(("{", "[")):
        problem = _json_problem(stdout)
        if problem:
            return f"stdout JSON: {problem}"
        if _duplicates_in_summary(stdout):
            return "the summary lists one file twice (two outputs share a file name)"
    claimed = _claimed_count(stdout)
    if claimed is not None and case.out is not None and case.out.is_dir() and claimed != len(files):
        return f"says it wrote {claimed} files but {len(files)} are there (two outputs share a file name)"
    return None


def _file_problem(path: Path) -> str | None:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                for name in z.files:
                    a = z[name]
                    if a.size == 0:
                        return f"array {name} is empty"
                    if name.startswith("photo_map_"):   # NaN marks photo pixels a crop cut off, by design
                        if np.isinf(a).any() or not np.isfinite(a).any():
                            return f"array {name} has Inf or no finite value"
                    elif a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                        return f"array {name} has NaN/Inf"
        except Exception as exc:  # an unreadable result file is a wrong result
            return f"unreadable npz ({type(exc).__name__})"
    elif path.suffix == ".json":
        return _json_problem(path.read_text(errors="replace"))
    return None


def _json_problem(text: str) -> str | None:
    def refuse(token):
        raise ValueError(token)
    try:
        data = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        return f"not strict JSON ({str(exc)[:60]})"
    if isinstance(data, dict) and "methods" in data and not data["methods"]:
        return "no methods evaluated"
    if isinstance(data, dict) and data.get("layers") == []:
        return "no layers"
    return None


def _duplicates_in_summary(stdout: str) -> bool:
    try:
        files = json.loads(stdout).get("files", [])
    except (ValueError, AttributeError):
        return False
    return len(files) != len(set(files))


def _claimed_count(stdout: str) -> int | None:
    for line in stdout.splitlines():
        if line.startswith("wrote ") and " files to " in line:
            try:
                return int(line.split()[1])
            except ValueError:
                return None
    return None


def _exception_line(lines: list[str]) -> str:
    tail = [l for l in lines if not l.startswith((" ", "Traceback"))]
    return (tail[-1] if tail else lines[-1] if lines else "")[:200]


def _last_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    return f": {lines[-1][:160]}" if lines else ""


# ----------------------------------------------------------------------------- API cases
def run_api(case: Case) -> Outcome:
    """Call case.api in-process: OnnxCamError is a refusal, any other exception a traceback."""
    from onnxcam.errors import OnnxCamError

    start = time.monotonic()
    try:
        value = case.api()
    except OnnxCamError as exc:
        text = str(exc)
        seconds = time.monotonic() - start
        if "\n" in text.strip() or not text.strip():
            return Outcome("traceback", f"error message is not one line: {text[:120]!r}", seconds=seconds)
        if RAW_SOURCE_PATH.search(text):
            return Outcome("traceback", f"raw source path in the error: {text[:160]}", seconds=seconds)
        return Outcome("refused", text[:200], seconds=seconds)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # MemoryError, RecursionError ... all break the promise
        return Outcome("traceback", f"{type(exc).__name__}: {str(exc)[:160]}", seconds=time.monotonic() - start)
    seconds = time.monotonic() - start
    if case.secret and case.secret in repr(value):
        return Outcome("escape", "the canary's secret appears in the result", seconds=seconds)
    problem = case.check_result(value) if case.check_result else None
    if problem:
        return Outcome("silent_wrong", problem, seconds=seconds)
    if case.if_accepted:
        return Outcome(case.if_accepted, "accepted: " + case.description, seconds=seconds)
    return Outcome("ok", seconds=seconds)


def run(case: Case) -> Outcome:
    return run_api(case) if case.api is not None else run_cli(case)
