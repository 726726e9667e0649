"""Context-aware saliency (Goferman, Zelnik-Manor & Tal, CVPR 2010), for the SR map.

Parameters as in the paper and its reference reimplementation: CIELab planes scaled to [0, 1],
longest side 250 px, scales r = 1, 0.8, 0.5, 0.3 with patches of 7, 5, 3, 3 px, patch distance
d = d_color / (1 + 3 d_position) (positions normalized by the longest side), the K = 64 most
similar patches searched in the image at scales r, r/2, r/4 (copies under 0.2 of the original
skipped), S = 1 - exp(-mean d) averaged over the scales, then the immediate context: foci are
pixels above 0.8 max(S) and S <- S (1 - normalized distance to the foci).

Our choices where the paper is silent: patches are sampled every ceil(size/2) px ("half a patch";
the MATLAB reimplementation rounds down, which at 3 px means every pixel and costs ~10x more),
a patch is not its own neighbour, and d_color is divided by the patch area so the scales weigh
alike (the reimplementation's 49/size² factor). Deterministic; numpy + OpenCV, and onnxruntime's
TopK for the K nearest.
"""
from __future__ import annotations

import math
import threading

import cv2
import numpy as np
from onnx import TensorProto, helper

from ._runtime import import_onnxruntime

LONG_SIDE = 250
SCALES = (1.0, 0.8, 0.5, 0.3)
PATCHES = (7, 5, 3, 3)
SEARCH = (1.0, 0.5, 0.25)
K = 64
C_POS = 3.0
FOCI = 0.8
CHUNK = 1024


def _lab01(rgb01: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(np.clip(rgb01, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    lo, hi = lab.min(axis=(0, 1)), lab.max(axis=(0, 1))
    return ((lab - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


def _resize(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR if factor >= 1 else cv2.INTER_AREA)


def _patches(img: np.ndarray, size: int, step: int, norm: float):
    """Patch vectors [M, size*size*3], their centres normalized by `norm`, and the grid shape."""
    h, w = img.shape[:2]
    half = size // 2
    ys = np.arange(half, h - half, step)
    xs = np.arange(half, w - half, step)
    if len(ys) == 0 or len(xs) == 0:
        return np.zeros((0, size * size * 3), np.float32), np.zeros((0, 2), np.float32), (0, 0)
    win = np.lib.stride_tricks.sliding_window_view(img, (size, size), axis=(0, 1))  # [h', w', 3, s, s]
    vec = win[ys - half][:, xs - half].reshape(len(ys) * len(xs), -1).astype(np.float32)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32) / norm
    return vec, pos, (len(ys), len(xs))


def _scale_saliency(lab: np.ndarray, r: float, size: int, threads: int | None = None) -> np.ndarray:
    img = _resize(lab, r)
    step = max(1, math.ceil(size / 2))
    longest = max(lab.shape[:2])
    q_vec, q_pos, grid = _patches(img, size, step, longest * r)
    if q_vec.shape[0] == 0:
        return np.zeros(lab.shape[:2], np.float32)
    cands = [(q_vec, q_pos)]  # the image itself (SEARCH[0] = 1), then its coarser copies
    for s in SEARCH[1:]:
        if r * s >= 0.2:
            cands.append(_patches(_resize(img, s), size, step, longest * r * s)[:2])
    c_vec = np.concatenate([c[0] for c in cands])
    c_pos = np.concatenate([c[1] for c in cands])
    c_sq = (c_vec ** 2).sum(axis=1) / (size * size)
    c_vec_t = (c_vec.T / (size * size)).astype(np.float32)
    p_sq = (c_pos ** 2).sum(axis=1)
    k = min(K, c_vec.shape[0] - 1)
    sal = np.empty(q_vec.shape[0], np.float32)
    for start in range(0, q_vec.shape[0], CHUNK):
        q, qp = q_vec[start:start + CHUNK], q_pos[start:start + CHUNK]
        # squared distances as |a|^2 + |b|^2 - 2ab, in place: the [chunk, M] arrays dominate the time
        d = q @ c_vec_t
        d *= -2.0
        d += ((q ** 2).sum(axis=1) / (size * size))[:, None]
        d += c_sq[None]
        np.maximum(d, 0, out=d)
        np.sqrt(d, out=d)
        pos = qp @ c_pos.T
        pos *= -2.0
        pos += (qp ** 2).sum(axis=1)[:, None]
        pos += p_sq[None]
        np.maximum(pos, 0, out=pos)
        np.sqrt(pos, out=pos)
        pos *= C_POS
        pos += 1.0
        d /= pos
        rows = np.arange(d.shape[0])
        d[rows, start + rows] = np.inf  # a patch is not its own neighbour (candidates start with q)
        sal[start:start + d.shape[0]] = 1.0 - np.exp(-_mean_of_smallest(d, k, threads))
    coarse = sal.reshape(grid)
    return cv2.resize(coarse, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_LINEAR)


_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


def _smallest_session(threads: int | None):
    """TopK(largest=0) then ReduceMean over each row, as one onnxruntime graph: its multi-threaded
    selection is ~3x faster than numpy's single-threaded partition, which was ~70% of this
    module's time (tests/benchmarks/bench_saliency.py). Same values: the K smallest as a set.
    One session per thread count (a Ray CPU worker asks for 1), built once under a lock."""
    with _SESSIONS_LOCK:
        if threads not in _SESSIONS:
            ort = import_onnxruntime()
            graph = helper.make_graph(
                [helper.make_node("TopK", ["d", "k"], ["v", "i"], axis=1, largest=0, sorted=0),
                 helper.make_node("ReduceMean", ["v"], ["m"], axes=[1], keepdims=0)], "k_smallest_mean",
                [helper.make_tensor_value_info("d", TensorProto.FLOAT, ["n", "m"]),
                 helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
                [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n"])])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
            opts = ort.SessionOptions()
            opts.log_severity_level = 4
            if threads:
                opts.intra_op_num_threads = threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # its idle threads would
            # otherwise spin between runs, taking the cores from the numpy and BLAS work around each one
            _SESSIONS[threads] = ort.InferenceSession(model.SerializeToString(), opts,
                                                      providers=["CPUExecutionProvider"])
        return _SESSIONS[threads]


def _mean_of_smallest(d: np.ndarray, k: int, threads: int | None = None) -> np.ndarray:
    """Mean of the k smallest values of each row of d [n, m] (float32)."""
    return _smallest_session(threads).run(["m"], {"d": d, "k": np.array([k], np.int64)})[0]


def context_aware_saliency(rgb01: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Saliency [H, W] in [0, 1] of an RGB image with values in [0, 1] (any size); threads: of the
    K-nearest selection (None: onnxruntime's default)."""
    h, w = rgb01.shape[:2]
    f = LONG_SIDE / max(h, w)
    small = cv2.resize(rgb01.astype(np.float32), (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_LINEAR)
    lab = _lab01(small)
    s = np.mean([_scale_saliency(lab, r, p, threads) for r, p in zip(SCALES, PATCHES)], axis=0)
    if s.max() > 0:
        foci = (s > FOCI * s.max()).astype(np.uint8)
        dist = cv2.distanceTransform(1 - foci, cv2.DIST_L2, 5)
        if dist.max() > 0:
            s = s * (1.0 - dist / dist.max())
    s = cv2.resize(s.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return (s / s.max()).astype(np.float32) if s.max() > 0 else s
