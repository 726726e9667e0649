"""onnxruntime sessions: provider choice, IOBinding, batch sizing under a memory budget.

Every run goes through IOBinding on the session's own device, so the code path the CUDA build
takes is the one the CPU tests exercise. onnxruntime-gpu silently falls back to CPU when CUDA
cannot start, so we always report `session.get_providers()[0]`, the provider actually used.
A failed run is an OnnxCamError that names the graph and the node onnxruntime names, says what to
try, and ends with onnxruntime's own message (shortened by errors.first_line).
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from ._runtime import import_onnxruntime
from .errors import OnnxCamError, describe, first_line, ort_failure

ort = import_onnxruntime()

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DEFAULT_BUDGET_MB = 1024
DEFAULT_MAX_BATCH = 64


def choose_providers(requested=None) -> list[str]:
    """CUDA first when this onnxruntime build offers it, then CPU; or what the user asked for."""
    available = ort.get_available_providers()
    if requested is not None and not isinstance(requested, (str, list, tuple)) or \
            isinstance(requested, (list, tuple)) and not all(isinstance(p, str) for p in requested):
        raise OnnxCamError(f"providers must be a provider name or a list of names such as "
                           f"['CPUExecutionProvider'], got {describe(requested)}")
    if requested:
        requested = [requested] if isinstance(requested, str) else list(requested)
        missing = [p for p in requested if p not in available]
        if missing:
            raise OnnxCamError(f"execution provider(s) {', '.join(missing)} not available in this "
                               f"onnxruntime build (available: {', '.join(available)})")
        return requested
    return [p for p in (CUDA, CPU) if p in available]


class Session:
    """One onnxruntime session over one explain graph, run through IOBinding.

    label: what the graph computes, in words, for error messages ("forward", "gradient", ...)."""

    def __init__(self, model: onnx.ModelProto | bytes, providers: list[str], threads: int | None = None,
                 label: str = "explain"):
        """model: the graph, or its serialized bytes (the cache passes bytes and drops the proto
        first, so a large model is not held three times while onnxruntime builds its copy)."""
        self.label = label
        opts = ort.SessionOptions()
        opts.log_severity_level = 4  # failures reach the user as our one line, not as log lines
        if threads:
            opts.intra_op_num_threads = threads
        try:
            data = model if isinstance(model, bytes) else model.SerializeToString()
            self.sess = ort.InferenceSession(data, opts, providers=providers)
        except Exception as exc:
            raise OnnxCamError(f"onnxruntime cannot build the {label} graph of this model; check that the "
                               "model itself loads in onnxruntime, or re-export it "
                               f"({first_line(exc)})") from None
        self.provider = self.sess.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA else "cpu"
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def to_device(self, arr: np.ndarray) -> ort.OrtValue:
        """Put an array on the session's device once, to bind it to many runs (Score-CAM's image)."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), self.device, 0)

    def run(self, feeds: dict, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        binding = self.sess.io_binding()
        for name, value in feeds.items():
            value = value if isinstance(value, ort.OrtValue) else self.to_device(value)
            binding.bind_ortvalue_input(name, value)
        names = outputs or self.output_names
        for name in names:
            binding.bind_output(name, self.device)
        try:
            self.sess.run_with_iobinding(binding)
            return dict(zip(names, binding.copy_outputs_to_cpu()))
        except Exception as exc:   # onnxruntime's Fail, InvalidArgument, RuntimeException, RuntimeError
            raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> OnnxCamError:
        """A failed run in words: which graph, which node, what to try, then onnxruntime's line."""
        op, node, message = ort_failure(str(exc))
        where = f" at node '{node}' ({op})" if node else ""
        if any(k in message.lower() for k in ("alloc", "out of memory", "bad_alloc")):
            hint = "memory ran out: lower --memory-budget-mb or --max-batch (memory_budget_mb, max_batch)"
        else:
            hint = ("the model cannot compute this input: check that it runs in plain onnxruntime at this "
                    "input size and batch, and that the preprocessing matches how it was trained")
        return OnnxCamError(f"onnxruntime failed running the {self.label} graph{where}; {hint} "
                            f"({first_line(exc)})")


def per_sample_bytes(model: onnx.ModelProto) -> int:
    """Upper bound of activation memory per image: every intermediate tensor, float32.

    onnxruntime reuses buffers, so the true peak is lower; erring high keeps us inside the budget.
    """
    total = 0
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            continue
        n = 1
        for d in dims[1:]:
            n *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
        total += n * 4
    return max(total, 1)


def check_limits(budget_mb, max_batch) -> None:
    """The engine's limits: a finite memory budget > 0 MB and a whole max_batch >= 1."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise OnnxCamError(f"max_batch (--max-batch) must be a whole number >= 1, got {describe(max_batch)}")
    if (isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float, np.integer, np.floating))
            or not math.isfinite(budget_mb) or budget_mb <= 0):
        raise OnnxCamError(f"memory_budget_mb (--memory-budget-mb) must be a finite number > 0, "
                           f"got {describe(budget_mb)}")


def batch_size(model: onnx.ModelProto | int, budget_mb: float = DEFAULT_BUDGET_MB,
               max_batch: int = DEFAULT_MAX_BATCH, batchable: bool = True) -> int:
    """Largest batch whose activations fit the budget, within [1, max_batch].

    model: the graph, or its per_sample_bytes (what the session cache keeps instead of the graph)."""
    check_limits(budget_mb, max_batch)
    if not batchable:
        return 1
    per_sample = model if isinstance(model, int) else per_sample_bytes(model)
    fit = math.floor(budget_mb * 2**20 / per_sample)
    return int(min(max_batch, max(1, fit)))


def even_batches(total: int, step: int) -> list[tuple[int, int]]:
    """[start, stop) of the fewest batches of at most `step` rows covering `total`, sized alike.

    Rows beyond the last full batch would otherwise run as one small batch (785 Score-CAM masks at
    step 20 end with a batch of 5, where per-image throughput drops); batches differing by at most
    one row keep every run near the chosen size, with the same number of runs."""
    if total <= 0:
        return []
    runs = -(-total // step)
    size, larger = divmod(total, runs)      # `larger` batches of size + 1, then batches of size
    bounds = np.cumsum([0] + [size + 1] * larger + [size] * (runs - larger))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def join_batches(outs: list[dict], name: str) -> np.ndarray:
    """One output over all batches: the array itself when there was one batch (explaining all
    layers returns activations and relevances of every layer, and copying them again cost a
    quarter of Relevance-CAM's time on EfficientNet-Lite0), else their concatenation."""
    return outs[0][name] if len(outs) == 1 else np.concatenate([o[name] for o in outs])


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the graph's initializers: about what one onnxruntime session of it holds."""
    return sum(t.ByteSize() for t in model.graph.initializer)


def _varint(n: int) -> bytes:
    """n >= 0 as a protobuf base-128 varint (7 bits per byte, low first, high bit = more follows)."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _header(number: int, size: int) -> bytes:
    """The tag (field number, wire type 2 = length-delimited) and length of a protobuf field."""
    return _varint(number << 3 | 2) + _varint(size)


_MALLOC_TRIM = None   # glibc's malloc_trim once looked up; False where there is none


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op where there is none).

    glibc keeps the pages of a freed message resident in its heap, while the joined bytes of a
    large graph (over 32 MB) come from a fresh mmap: without the trim the freed graph still counts
    in the peak, and serializing in parts saves nothing (ResNet-50's LRP build peaked at ~1330 MB
    either way; with the trim at ~1070 MB, below the run's own peak)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


def serialized_parts(model: onnx.ModelProto) -> list[bytes]:
    """model.SerializeToString() in parts, to be joined after the caller drops `model`.

    SerializeToString holds the message, protobuf's buffer and Python's copy of it at once: three
    times an LRP graph's weights (+540 MB on ResNet-50, the peak of a whole LRP run at batch 1).
    Serializing the initializers one by one and framing the parts by hand (ModelProto.graph =
    field 7, GraphProto.initializer = field 5; protobuf reads fields in any order) lets the
    caller free the message before the parts are joined: two copies at most, never three.
    `model` is left without its graph and is not to be used again."""
    graph = model.graph
    body = []
    for tensor in graph.initializer:
        data = tensor.SerializeToString()
        body += [_header(5, len(data)), data]
    del graph.initializer[:]
    body.insert(0, graph.SerializeToString())
    model.ClearField("graph")
    return [model.SerializeToString(), _header(7, sum(len(part) for part in body))] + body


class SessionCache:
    """Explain graphs are built once per request shape and their sessions reused.

    Each session holds its own copy of the weights (a VGG-16 session is ~0.5 GB, plus onnxruntime's
    pre-packed copies of its dense layers), so the cache keeps at most `size` sessions and, beyond
    the most recent one, only while their weights add up to at most `weight_budget_mb`. The graph
    itself is not kept: only what batch sizing needs (its activation bytes per image).
    """

    def __init__(self, providers: list[str], threads: int | None = None, size: int = 4,
                 weight_budget_mb: float = 2048):
        self.providers = providers
        self.threads = threads
        self.size = size
        self.weight_budget = weight_budget_mb * 2**20
        self._sessions: dict = {}  # key -> (Session, extra, per-sample bytes, weight bytes, build)
        self.provider: str | None = None  # of the last session built

    def get(self, key, build) -> tuple[Session, object]:
        """Session for `key`, building the graph with `build()` -> (ModelProto, extra) on first use.
        build() returns a graph of its own (every graph builder deep-copies the model): the cache
        takes it apart while serializing it (serialized_parts)."""
        if key in self._sessions:
            self._sessions[key] = self._sessions.pop(key)  # most recently used goes last
        else:
            graph, extra = build()
            per_sample, weights = per_sample_bytes(graph), weight_bytes(graph)
            parts = serialized_parts(graph)
            del graph
            release_freed_memory()
            data = b"".join(parts)
            del parts
            kind = key[0] if isinstance(key, tuple) and isinstance(key[0], str) else "explain"
            label = {"masked": "Score-CAM masked-image", "gradient": "gradient/relevance"}.get(kind, kind)
            self._evict(weights)
            session = Session(data, self.providers, self.threads, label=label)
            del data
            self.provider = session.provider
            self._sessions[key] = (session, extra, per_sample, weights, build)
        sess, extra = self._sessions[key][:2]
        return sess, extra

    def _evict(self, incoming: int) -> None:
        """Drop the least recently used sessions so the new one fits the count and weight limits
        (before it is built, so old and new never peak together)."""
        while self._sessions and (len(self._sessions) + 1 > self.size or
                                  sum(s[3] for s in self._sessions.values()) + incoming > self.weight_budget):
            self._sessions.pop(next(iter(self._sessions)))

    def graph(self, key) -> onnx.ModelProto:
        """The graph of the session cached under `key`, built again (the cache keeps only how to
        build it): for inspecting what ran, e.g. the parity tests that expose its gate tensors."""
        return self._sessions[key][4]()[0]

    def clear(self) -> None:
        """Drop every cached session and the memory it holds; later calls build what they need again."""
        self._sessions.clear()

    def per_sample(self, key) -> int:
        """Activation bytes per image of the graph cached under `key` (for batch sizing)."""
        return self._sessions[key][2]
