"""onnxruntime sessions: provider choice, IOBinding, batch sizing under a memory budget.

Every run goes through IOBinding on the session's own device, so the code path the CUDA build
takes is the one the CPU tests exercise. onnxruntime-gpu silently falls back to CPU when CUDA
cannot start, so we always report `session.get_providers()[0]`, the provider actually used.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from ._runtime import import_onnxruntime
from .errors import OnnxCamError, first_line

ort = import_onnxruntime()

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DEFAULT_BUDGET_MB = 1024
DEFAULT_MAX_BATCH = 64


def choose_providers(requested=None) -> list[str]:
    """CUDA first when this onnxruntime build offers it, then CPU; or what the user asked for."""
    available = ort.get_available_providers()
    if requested:
        requested = [requested] if isinstance(requested, str) else list(requested)
        missing = [p for p in requested if p not in available]
        if missing:
            raise OnnxCamError(f"execution provider(s) {', '.join(missing)} not available in this "
                               f"onnxruntime build (available: {', '.join(available)})")
        return requested
    return [p for p in (CUDA, CPU) if p in available]


class Session:
    """One onnxruntime session over one explain graph, run through IOBinding."""

    def __init__(self, model: onnx.ModelProto, providers: list[str], threads: int | None = None):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.sess = ort.InferenceSession(model.SerializeToString(), opts, providers=providers)
        except Exception as exc:
            raise OnnxCamError(f"onnxruntime cannot build the explain graph: {first_line(exc)}") from None
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
        self.sess.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu()))


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


def batch_size(model: onnx.ModelProto, budget_mb: float = DEFAULT_BUDGET_MB,
               max_batch: int = DEFAULT_MAX_BATCH, batchable: bool = True) -> int:
    """Largest batch whose activations fit the budget, within [1, max_batch]."""
    if not batchable:
        return 1
    if max_batch < 1:
        raise OnnxCamError(f"max_batch must be >= 1, got {max_batch}")
    fit = math.floor(budget_mb * 2**20 / per_sample_bytes(model))
    return int(min(max_batch, max(1, fit)))


class SessionCache:
    """Explain graphs are built once per request shape and their sessions reused.

    Each session holds its own copy of the weights, so only the `size` most recently used stay
    alive (a VGG-16 session is ~0.5 GB).
    """

    def __init__(self, providers: list[str], threads: int | None = None, size: int = 4):
        self.providers = providers
        self.threads = threads
        self.size = size
        self._sessions: dict = {}
        self.provider: str | None = None  # of the last session built

    def get(self, key, build) -> tuple[Session, object]:
        """Session for `key`, building the graph with `build()` -> (ModelProto, extra) on first use."""
        if key in self._sessions:
            self._sessions[key] = self._sessions.pop(key)  # most recently used goes last
        else:
            graph, extra = build()
            session = Session(graph, self.providers, self.threads)
            self.provider = session.provider
            self._sessions[key] = (session, extra, graph)
            while len(self._sessions) > self.size:
                self._sessions.pop(next(iter(self._sessions)))
        sess, extra, _ = self._sessions[key]
        return sess, extra

    def graph(self, key) -> onnx.ModelProto:
        return self._sessions[key][2]
