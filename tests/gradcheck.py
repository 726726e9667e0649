"""Finite-difference checks of the backward engine on small single-op graphs.

The forward op and our appended backward graph are both evaluated in float64 with ONNX's own
reference evaluator, so the check is exact to ~1e-9; the same backward graph is also run by
onnxruntime in float32 to prove it executes there. Directional derivatives are compared:
(f(x + h v) - f(x - h v)) / 2h · seed  versus  <dS/dx, v> for random directions v.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnx.reference.ops._op import OpRunUnaryNum
from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ReferenceConvTranspose

from onnxcam.graph.backward import append_backward

H = 1e-6


class ConvTranspose(_ReferenceConvTranspose):
    """The reference evaluator's grouped ConvTranspose assumes one channel per group (onnx 1.23);
    run it group by group instead, so grouped/depthwise Conv gradients can be checked."""

    def _run(self, X, W, B=None, **attrs):
        group = attrs.get("group") or 1
        if group == 1:
            return super()._run(X, W, B, **attrs)
        attrs["group"] = 1
        cin = X.shape[1] // group
        parts = [super(ConvTranspose, self)._run(X[:, k * cin:(k + 1) * cin], W[k * cin:(k + 1) * cin],
                                                 None, **attrs)[0] for k in range(group)]
        y = np.concatenate(parts, axis=1)
        if B is not None:
            y = y + B.reshape((1, -1) + (1,) * (y.ndim - 2))
        return (y.astype(X.dtype),)


class Erf(OpRunUnaryNum):
    """The reference Erf computes in float32 (onnx 1.23); finite differences need float64."""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


class MaxPool(OpRun):
    """Plain-loop 2-D MaxPool with flat indices (NCHW, row-major, first maximum wins): the reference
    evaluator's Indices are wrong for non-square kernels (onnx 1.23)."""

    def _run(self, x, auto_pad=None, ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
             storage_order=0, strides=None):
        n, c, h, w = x.shape
        kh, kw = kernel_shape
        sh, sw = strides or (1, 1)
        dh, dw = dilations or (1, 1)
        pt, pl, pb, pr = pads or (0, 0, 0, 0)
        mode = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if mode in ("SAME_UPPER", "SAME_LOWER"):  # Paddle's stems pad this way (PP-OCR det)
            (pt, pb), (pl, pr) = (_same_pads(size, k, s, d, mode)
                                  for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)))
        rnd = math.ceil if ceil_mode else math.floor
        oh = rnd((h + pt + pb - dh * (kh - 1) - 1) / sh) + 1
        ow = rnd((w + pl + pr - dw * (kw - 1) - 1) / sw) + 1
        if ceil_mode:  # the last window must start inside the input or its left padding
            oh -= (oh - 1) * sh >= h + pt
            ow -= (ow - 1) * sw >= w + pl
        y = np.zeros((n, c, oh, ow), x.dtype)
        idx = np.zeros((n, c, oh, ow), np.int64)
        for i in range(oh):
            for j in range(ow):
                rows = [r for r in range(i * sh - pt, i * sh - pt + dh * (kh - 1) + 1, dh) if 0 <= r < h]
                cols = [q for q in range(j * sw - pl, j * sw - pl + dw * (kw - 1) + 1, dw) if 0 <= q < w]
                flat = np.array([r * w + q for r in rows for q in cols])
                window = x.reshape(n, c, h * w)[:, :, flat]
                best = window.argmax(axis=2)
                y[:, :, i, j] = np.take_along_axis(window, best[..., None], 2)[..., 0]
                base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * h * w
                idx[:, :, i, j] = base + flat[best]
        return (y, idx)


def _same_pads(size: int, kernel: int, stride: int, dilation: int, mode: str) -> tuple[int, int]:
    """(begin, end) padding of auto_pad SAME_UPPER / SAME_LOWER: output ceil(size / stride), the
    odd pixel at the end (UPPER) or the beginning (LOWER)."""
    total = max((math.ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    small = total // 2
    return (small, total - small) if mode == "SAME_UPPER" else (total - small, small)


def evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    return ReferenceEvaluator(model, new_ops=[ConvTranspose, Erf, MaxPool])


def build(nodes, inputs: dict, consts: dict, output: str, dtype, opset: int = 17) -> onnx.ModelProto:
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    vis = [helper.make_tensor_value_info(n, elem, list(v.shape)) for n, v in inputs.items()]
    inits = [numpy_helper.from_array(v.astype(dtype) if v.dtype == np.float64 else v, n)
             for n, v in consts.items()]
    graph = helper.make_graph(nodes, "probe", vis, [helper.make_tensor_value_info(output, elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)


def with_backward(model: onnx.ModelProto, output: str, wrt: list[str], rules=None) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    elem = m.graph.input[0].type.tensor_type.elem_type
    m.graph.input.append(helper.make_tensor_value_info("seed", elem, None))
    grads = append_backward(m, output, "seed", wrt, rules)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(grads[w], elem, None) for w in wrt)
    return m


def check(nodes, inputs: dict, wrt: list[str], consts: dict | None = None, output: str = "y",
          rtol: float = 1e-6, directions: int = 3, seed: int = 0, opset: int = 17, rules=None):
    """Assert the appended gradients equal finite differences (float64) and run in onnxruntime."""
    consts = consts or {}
    rng = np.random.default_rng(seed)
    f64 = build(nodes, {k: v.astype(np.float64) for k, v in inputs.items()}, consts, output, np.float64, opset)
    ref = evaluator(f64)
    feeds = {k: v.astype(np.float64) for k, v in inputs.items()}
    y = ref.run(None, feeds)[0]
    s = rng.normal(size=y.shape)
    back = with_backward(f64, output, wrt, rules)
    grads = evaluator(back).run(None, {**feeds, "seed": s})
    for name, g in zip(wrt, grads):
        assert g.shape == inputs[name].shape, (name, g.shape, inputs[name].shape)
        for _ in range(directions):
            v = rng.normal(size=g.shape)
            plus = ref.run(None, {**feeds, name: feeds[name] + H * v})[0]
            minus = ref.run(None, {**feeds, name: feeds[name] - H * v})[0]
            fd = float(np.sum((plus - minus) / (2 * H) * s))
            an = float(np.sum(g * v))
            scale = max(abs(fd), abs(an), 1e-3 * np.abs(g).sum() * np.abs(v).mean(), 1e-12)
            assert abs(fd - an) / scale <= rtol, f"{name}: finite difference {fd} vs gradient {an}"
    # the same backward graph, float32, in onnxruntime
    f32 = build(nodes, {k: v.astype(np.float32) for k, v in inputs.items()}, consts, output, np.float32, opset)
    sess = ort.InferenceSession(with_backward(f32, output, wrt, rules).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {**{k: v.astype(np.float32) for k, v in inputs.items()}, "seed": s.astype(np.float32)})
    for name, g64, g32 in zip(wrt, grads, got):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(g64).max()),
                                   err_msg=f"onnxruntime float32 gradient of {name}")
    return grads
