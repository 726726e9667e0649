"""Where one LRP pass spends its time and memory, op type by op type, against the plain forward.

Builds the LRP graph `Explainer.relevance(x, ["input"])` runs (EpsilonPlusFlat), then runs it and the
unmodified model in fresh onnxruntime sessions with SessionOptions.enable_profiling and prints, per
op type, the milliseconds of one run (mean over --repeat runs after a warm-up) in each, and how
often the op occurs. Then what holds memory: the bytes of the forward tensors the LRP graph's
backward half reads (saved activations, alive until it does), and the resident memory after each
stage of a fresh process (load, graph build, session, run) for the plain forward and the LRP pass.

    python tests/benchmarks/profile_lrp.py [--model lite0|resnet50|vgg16] [--batch 1] [--repeat 5]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from benchtools import PHOTOS, ROOT, print_table

import onnxcam  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0" / "model.onnx"


def per_op_ms(model_bytes: bytes, feeds: dict, repeat: int) -> tuple[dict, dict, float]:
    """({op type: ms per run}, {op type: node count}, total node ms per run) from onnxruntime's profile."""
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="onnxcam_profile_")) / "run")
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    for _ in range(repeat + 1):
        sess.run(None, feeds)
    events = json.load(open(sess.end_profiling()))
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    warm_end = runs[0][1]
    ms, nodes = collections.defaultdict(float), collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > warm_end:
            op = e["args"]["op_name"]
            ms[op] += e["dur"] / 1e3 / repeat
            nodes[op].add(e["name"])
    return dict(ms), {k: len(v) for k, v in nodes.items()}, sum(ms.values())


def saved_bytes(graph: onnx.ModelProto, forward_names: set, batch: int) -> tuple[int, int]:
    """(bytes of forward tensors read by the appended backward nodes, bytes of all forward tensors),
    float32, shapes from the graph's value_info (batch dim set to `batch`)."""
    shapes = {}
    for vi in list(graph.graph.value_info) + list(graph.graph.output) + list(graph.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            n = batch
            for d in dims[1:]:
                n *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
            shapes[vi.name] = n * 4
    forward_nodes = {n.name for n in graph.graph.node if set(n.output) & forward_names}
    read_back = {i for n in graph.graph.node if n.name not in forward_nodes for i in n.input}
    saved = sum(shapes.get(t, 0) for t in forward_names & read_back)
    return saved, sum(shapes.get(t, 0) for t in forward_names)


LINEAR_OPS = {"Conv", "FusedConv", "NchwcConv", "ConvTranspose", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}


def linear_macs(graph: onnx.ModelProto, batch: int) -> int:
    """Multiply-adds of the graph's Conv, ConvTranspose, Gemm and MatMul nodes at `batch`, from
    inferred shapes: Conv N·Cout·out·(Cin/g)·k, ConvTranspose N·Cin·in·(Cout/g)·k, matmul M·K·N.
    Every symbolic dim is read as the batch: give it a graph whose other dims are static (the
    canonical graph of `Explainer.model`, not a raw export with dynamic pads)."""
    dims = {}
    for vi in list(graph.graph.value_info) + list(graph.graph.output) + list(graph.graph.input):
        d = vi.type.tensor_type.shape.dim
        dims[vi.name] = [x.dim_value if x.HasField("dim_value") and x.dim_value > 0 else batch for x in d]
    for t in graph.graph.initializer:
        dims[t.name] = list(t.dims)
    total = 0
    for n in graph.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or not all(i in dims for i in n.input[:2]):
            continue
        a, w = dims[n.input[0]], dims[n.input[1]]
        if n.op_type == "Conv" and n.output[0] in dims:
            total += int(np.prod(dims[n.output[0]])) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            total += int(np.prod(a)) * int(np.prod(w[1:]))
        elif len(a) >= 2 and len(w) >= 2:   # [.., M, K] x [K, N] (Gemm transB: W is [N, K])
            trans_b = any(at.name == "transB" and at.i for at in n.attribute)
            total += int(np.prod(a)) * (w[0] if trans_b else w[-1])
    return total


STAGES = """
import sys, numpy as np
def mb(key):
    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) / 1024
def stage(name):
    print(name, mb('VmRSS'), mb('VmHWM'), flush=True)
path, batch, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
import onnxruntime as ort
stage('python, numpy, onnxruntime imported')
if mode == 'forward':
    s = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    stage('plain session built')
    s.run(None, {s.get_inputs()[0].name: x})
    stage('one forward run')
else:
    import onnxcam
    from onnxcam import engine
    stage('onnxcam imported')
    ex = onnxcam.Explainer(path, max_batch=batch, memory_budget_mb=1e6)
    stage('Explainer loaded (model, catalog)')
    built = engine.Session.__init__
    def init(self, *a, **k):
        stage('LRP graph built (before onnxruntime session)')
        built(self, *a, **k)
        stage('LRP session built')
    engine.Session.__init__ = init
    ex.relevance(x, ['input'])
    stage('one LRP run')
"""


def memory_stages(path, batch) -> list[list]:
    """RSS and peak RSS (MB) after each stage of a fresh process: plain forward vs onnxcam's LRP pass."""
    import subprocess
    import sys

    rows = []
    for mode in ("forward", "lrp"):
        out = subprocess.run([sys.executable, "-c", STAGES, str(path), str(batch), mode], capture_output=True,
                             text=True, check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        for line in out.stdout.splitlines():
            *name, rss, peak = line.split()
            rows.append([mode, " ".join(name), f"{float(rss):.0f}", f"{float(peak):.0f}"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--top", type=int, default=14, help="rows of the per-op table")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    if args.model == "lite0":
        path = LITE0
    else:
        from export_torchvision import export
        path = export(args.model, Path(tempfile.mkdtemp(prefix="onnxcam_bench_")) / f"{args.model}.onnx",
                      size=224, seed=0, verify=False)[1]
    ex = onnxcam.Explainer(path, max_batch=args.batch, memory_budget_mb=1e6)
    x1 = onnxcam.load_images(PHOTOS, ex.preprocess)
    xb = np.ascontiguousarray(np.resize(x1, (args.batch,) + x1.shape[1:]))
    ex.relevance(xb, ["input"])
    key = next(k for k in ex.sessions._sessions if isinstance(k, tuple) and k[0] == "gradient")
    lrp = ex.sessions.graph(key)
    feeds = {ex.model.input_name: xb}
    fwd_ms, fwd_n, fwd_total = per_op_ms(Path(path).read_bytes(), feeds, args.repeat)
    lrp_ms, lrp_n, lrp_total = per_op_ms(lrp.SerializeToString(), feeds, args.repeat)
    ops = sorted(set(fwd_ms) | set(lrp_ms), key=lambda o: -lrp_ms.get(o, 0))
    rows = [[op, f"{fwd_ms.get(op, 0):.1f}", fwd_n.get(op, 0), f"{lrp_ms.get(op, 0):.1f}", lrp_n.get(op, 0),
             f"{lrp_ms.get(op, 0) / lrp_total:.0%}"] for op in ops[:args.top]]
    rest = ops[args.top:]
    rows.append(["(other ops)", f"{sum(fwd_ms.get(o, 0) for o in rest):.1f}", sum(fwd_n.get(o, 0) for o in rest),
                 f"{sum(lrp_ms.get(o, 0) for o in rest):.1f}", sum(lrp_n.get(o, 0) for o in rest), ""])
    rows.append(["all nodes", f"{fwd_total:.1f}", sum(fwd_n.values()), f"{lrp_total:.1f}", sum(lrp_n.values()),
                 f"{lrp_total / fwd_total:.2f}x forward"])
    print_table(f"{args.model}, batch {args.batch}: kernel ms per run by op type, onnxruntime profile "
                f"(CPU; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} now)",
                ["op", "forward ms", "forward nodes", "LRP ms", "LRP nodes", "share of LRP"], rows)

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(lrp)
    macs = linear_macs(inferred, args.batch) / linear_macs(onnx.shape_inference.infer_shapes(ex.model.proto), args.batch)
    lin = sum(v for k, v in lrp_ms.items() if k in LINEAR_OPS) / sum(v for k, v in fwd_ms.items() if k in LINEAR_OPS)
    print(f"\nthe floor of the rules as written: the LRP graph's linear ops do {macs:.2f}x the forward's "
          f"multiply-adds, and their kernels take {lin:.2f}x the forward's linear kernel time; the elementwise "
          f"ops and layout reorders add the rest ({lrp_total / fwd_total:.2f}x in all, profiled)")
    forward_names = {o for n in model.graph.node for o in n.output} | {ex.model.input_name}
    saved, every = saved_bytes(inferred, forward_names, args.batch)
    print(f"\nforward tensors the LRP backward reads (kept alive until it does): {saved / 2**20:.0f} MB of "
          f"{every / 2**20:.0f} MB produced by the forward, batch {args.batch}")
    print_table(f"Memory by stage, fresh processes, batch {args.batch} (the whole batch in one LRP run)",
                ["process", "after", "RSS MB", "peak RSS MB"], memory_stages(path, args.batch))


if __name__ == "__main__":
    main()
