"""Prove that a canonical model really takes a batch: one batch-2 run must equal two batch-1 runs.

Editing the input's batch dim is not enough (hard-coded Reshape/Expand constants survive it), so we
check by running. A model that fails is explained image by image, and intake says so.
"""
from __future__ import annotations

import numpy as np
import onnx

from .._runtime import import_onnxruntime


# Ops whose result for one image depends on the other images of the batch.
BATCH_COUPLED = {"DynamicQuantizeLinear": "dynamic quantization takes its activation ranges over the "
                                          "whole batch"}


def batching_problem(model: onnx.ModelProto, input_name: str, input_dims: list[int],
                     runnable: str | None = None) -> str | None:
    """Why the model must be run one image at a time, or None when batches are safe.

    runnable: a file holding the same graph (intake's canonical file), run instead of serializing
    `model` again."""
    for node in model.graph.node:
        if node.op_type in BATCH_COUPLED:
            return f"{BATCH_COUPLED[node.op_type]} ({node.op_type} node {node.name!r})"
    if not verify_batching(runnable or model, input_name, input_dims):
        return "the model does not run batches correctly"
    return None


def verify_batching(model: onnx.ModelProto | str, input_name: str, input_dims: list[int]) -> bool:
    from .canonical import light_session_options

    ort = import_onnxruntime()
    opts = light_session_options(ort)
    try:
        source = model if isinstance(model, str) else model.SerializeToString()
        sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception:
        return False
    x = np.random.default_rng(0).normal(size=[2] + list(input_dims)).astype(np.float32)  # float32_input ran
    try:
        both = sess.run(None, {input_name: x})
        one = [sess.run(None, {input_name: x[i:i + 1]}) for i in range(2)]
    except Exception:
        return False
    for k, out in enumerate(both):
        if out.shape[:1] != (2,):
            return False
        single = np.concatenate([one[0][k], one[1][k]])
        if single.shape != out.shape or not np.allclose(out, single, rtol=1e-3, atol=1e-4):
            return False
    return True
