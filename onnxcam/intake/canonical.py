"""Bring any exported model to one canonical form the rewriter can rely on.

Exporters disagree on opsets, leave stale `value_info` (Paddle writes -1/unk dims), hard-code the
batch, and emit long constant Shape/Gather chains. We normalize once, at load time:
opset >= 17, batch made symbolic (hard-coded Reshape batch constants patched), then onnxruntime's
own BASIC optimizer folds constants and fuses Conv+BN, and we shape-infer the result.
onnxruntime is the canonicalizer because it is the runtime we explain with: whatever it folds is
exactly what will run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxCamError, first_line, readable

TARGET_OPSET = 17
BATCH_DIM = "N"


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert to opset 17 when older: Softmax < 13 and MaxPool < 16 have other semantics.

    onnx's version converter trusts its input: a node whose attribute has the wrong type (a
    corrupted or hand-edited model) crashes it with SIGSEGV/SIGABRT, taking the caller's process
    along. So every node is checked against its opset's schema first (onnx.checker.check_node
    refuses exactly those nodes; the whole-model check would also refuse harmless things, such as a
    graph output without a shape) and both steps run in a child Python process: a crash there becomes
    one OnnxCamError line here. The child runs isolated (`-I`: no current folder, no PYTHON* variables
    on its path, so an `onnx.py` lying in the user's folder is never imported) with the folders this
    process found onnx and its dependencies in, and under a time limit.
    """
    old = default_opset(model)
    if old >= TARGET_OPSET:
        return model
    fix = f"re-export it with opset >= {TARGET_OPSET} or check it with onnx.checker.check_model"
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # over protobuf's 2 GiB
        raise OnnxCamError(f"cannot upgrade the model from opset {old}: {first_line(exc)}; {fix}") from None
    # the child imports the same onnx as this process: its folder first, then this process's path
    # without the current folder
    here = os.path.abspath(os.getcwd())
    path = [os.path.dirname(os.path.dirname(onnx.__file__))] + [
        p for p in sys.path if p and os.path.abspath(p) != here]
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _CONVERT, str(TARGET_OPSET), os.pathsep.join(path)],
                              input=data, capture_output=True, check=False, timeout=_CONVERT_SECONDS)
    except subprocess.TimeoutExpired:
        raise OnnxCamError(f"onnx's version converter did not finish upgrading the model from opset {old} "
                           f"within {_CONVERT_SECONDS} s; {fix}") from None
    except OSError as exc:
        raise OnnxCamError(f"cannot start a Python process to upgrade the model's opset: "
                           f"{exc.strerror or exc}") from None
    del data
    if done.returncode == 0:
        converted = onnx.ModelProto()
        converted.ParseFromString(done.stdout)
        return converted
    reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode == -9:
        raise OnnxCamError(f"the process upgrading the model from opset {old} was killed (out of memory?); "
                           f"free memory, or {fix}")
    if done.returncode < 0 or not reason:
        why = f"onnx's version converter crashed (signal {-done.returncode}) on this model"
        raise OnnxCamError(f"cannot upgrade the model from opset {old} to {TARGET_OPSET}: {why}; "
                           f"the model is probably corrupted: {fix}")
    raise OnnxCamError(f"cannot upgrade the model from opset {old} to {TARGET_OPSET}: "
                       f"{readable(reason[-1])}; {fix}")


# Runs in the child: check, convert, write the converted model to stdout; on failure print one
# line (the exception's first) to stderr and exit 1. A crash ends the child with a signal.
_CONVERT_SECONDS = 600
_CONVERT = """
import sys
sys.path[:0] = sys.argv[2].split(__import__("os").pathsep)
import onnx
from onnx import checker, version_converter
model = onnx.load_model_from_string(sys.stdin.buffer.read())
ctx = checker.C.CheckerContext()
ctx.ir_version = model.ir_version
ctx.opset_imports = {imp.domain: imp.version for imp in model.opset_import}
try:
    for node in model.graph.node:
        checker.check_node(node, ctx)
except Exception as exc:
    text = str(exc).strip().splitlines()
    sys.exit("the model is not valid ONNX (onnx.checker: " + (text[0] if text else type(exc).__name__) + ")")
try:
    out = version_converter.convert_version(model, int(sys.argv[1]))
except Exception as exc:
    text = str(exc).strip().splitlines()
    sys.exit("onnx's version converter failed: " + (text[0] if text else type(exc).__name__))
sys.stdout.buffer.write(out.SerializeToString())
"""


def drop_value_info(model: onnx.ModelProto) -> None:
    """Stale value_info (e.g. Paddle's -1/unk dims) poisons shape inference: drop it."""
    del model.graph.value_info[:]


def graph_inputs(model: onnx.ModelProto):
    """Graph inputs that are real inputs, not initializers listed as inputs (old exporters)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def make_batch_symbolic(model: onnx.ModelProto) -> int | None:
    """Turn dim 0 of every input/output into the symbol N; return the old static batch, if any."""
    static = None
    for vi in list(graph_inputs(model)) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 0:
            continue
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            static = static or dims[0].dim_value
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    return static


def float32_input(model: onnx.ModelProto, name: str) -> bool:
    """Give a float16 image input a float32 interface (a Cast to float16 right behind it), so every
    graph we build is fed float32 like any other model. Returns True when it changed the model."""
    vi = next((i for i in graph_inputs(model) if i.name == name), None)
    if vi is None or vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
        return False
    inner = f"{name}/onnxcam_fp16"
    for node in model.graph.node:
        for k, i in enumerate(node.input):
            if i == name:
                node.input[k] = inner
    for out in model.graph.output:
        if out.name == name:
            raise OnnxCamError(f"the image input {name!r} is also a graph output; not a classifier")
    cast = onnx.helper.make_node("Cast", [name], [inner], name="onnxcam/input_to_fp16",
                                 to=onnx.TensorProto.FLOAT16)
    model.graph.node.insert(0, cast)
    vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return True


def _downstream_of_inputs(model: onnx.ModelProto) -> set[str]:
    live = {i.name for i in graph_inputs(model)}
    for node in model.graph.node:  # exported graphs are topologically sorted
        if any(i in live for i in node.input):
            live.update(node.output)
    return live


def patch_batch_constants(model: onnx.ModelProto, static_batch: int | None) -> int:
    """Rewrite Reshape targets that hard-code the exported batch (e.g. [1, -1]) to the batch.

    A Reshape with shape [1, -1] on a batch-N tensor silently mixes images (onnx#3483). The first
    entry becomes -1 when no other entry is -1, else 0 ("copy the input's dim 0", allowzero=0).
    Returns how many Reshapes were patched; the caller verifies batching with a real run.
    """
    if not static_batch:
        return 0
    live = _downstream_of_inputs(model)
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    patched = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[0] not in live:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue
        name = node.input[1]
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
        elif name in consts and consts[name].attribute and consts[name].attribute[0].name == "value":
            arr = numpy_helper.to_array(consts[name].attribute[0].t)
        else:
            continue
        if arr.ndim != 1 or arr.size < 2 or arr[0] != static_batch:
            continue
        new = arr.copy()
        # -1 (inferred) is exact whenever the target has no other -1: the element count is the
        # batch times the rest. 0 (copy the input's dim 0) is the batch only when the input's dim 0
        # is: the dynamo exporter's attention reshapes [B*heads, d, T] to [1, heads, d, T].
        new[0] = 0 if -1 in arr[1:] else -1
        new_name = f"{name}__onnxcam_batch{patched}"
        model.graph.initializer.append(numpy_helper.from_array(new.astype(np.int64), new_name))
        node.input[1] = new_name
        patched += 1
    return patched


def spill(model: onnx.ModelProto, folder: str) -> str:
    """Write the model into `folder` for ort_canonicalize; the caller then drops its proto, so a
    large model is not in memory twice while onnxruntime reads the file."""
    path = os.path.join(folder, "model.onnx")
    try:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    except OSError as exc:
        raise OnnxCamError(f"cannot write a temporary copy of the model to {folder}: "
                           f"{exc.strerror or exc}; free disk space or set TMPDIR") from None
    except ValueError as exc:  # over protobuf's 2 GiB
        raise OnnxCamError(f"cannot serialize the model: {first_line(exc)}; save its weights as "
                           "external data") from None
    return path


def ort_canonicalize(path: str) -> onnx.ModelProto:
    """Let onnxruntime's BASIC level fold constants and fuse Conv+BN, then save standard ops only.

    EXTENDED would add com.microsoft:FusedConv and ALL would add NCHWc layout ops: never those.
    onnxruntime reads the model from `path` (see spill) and writes its result beside it.
    """
    from .._runtime import import_onnxruntime

    ort = import_onnxruntime()
    out = canonical_file(path)
    opts = light_session_options(ort)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = out
    try:
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxCamError("onnxruntime cannot load this model: "
                           f"{first_line(exc)}; check it with onnx.checker or re-export it") from None
    canonical = onnx.load(out)
    used = {n.domain for n in canonical.graph.node}
    keep = [imp for imp in canonical.opset_import if imp.domain in used or imp.domain in ("", "ai.onnx")]
    del canonical.opset_import[:]
    canonical.opset_import.extend(keep)
    return canonical


def canonicalize(path: str) -> onnx.ModelProto:
    """ort_canonicalize + infer_shapes, repeated while reads of static dims can be folded.

    TF-style "SAME" padding (timm's tf_* models, TorchScript export) computes its pads from
    Shape(x)[2:] at run time; with a symbolic batch the Shape is not constant, onnxruntime folds
    nothing, and every tensor behind the dynamic Pad loses its shape. Reads of dims that are
    static (height, width, channels) are constants: replacing them lets onnxruntime fold the
    whole padding chain into a constant Pad."""
    model = infer_shapes(ort_canonicalize(path))
    for _ in range(_MAX_FOLD_ROUNDS):  # each round makes the shapes behind one more Pad known
        if not fold_static_shape_reads(model):
            break
        spill(model, os.path.dirname(path))
        model = infer_shapes(ort_canonicalize(path))
    return model


# Rounds of fold + canonicalize: one per dynamic Pad met in sequence (tf_efficientnetv2_b0 has 5)
_MAX_FOLD_ROUNDS = 32


def _int_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return {k: numpy_helper.to_array(v) for k, v in values.items()
            if onnx.TensorProto.INT64 == v.data_type}


def fold_static_shape_reads(model: onnx.ModelProto) -> int:
    """Replace Shape nodes whose dims are all static, and Gathers of static dims out of a Shape,
    by constants. Returns how many were replaced (the caller re-canonicalizes to fold what follows)."""
    from .catalog import tensor_shapes

    shapes, consts = tensor_shapes(model), _int_constants(model)
    dims_of = {}  # Shape output -> its dims (ints or symbols)
    for node in model.graph.node:
        if node.op_type == "Shape" and node.input[0] in shapes:
            dims = list(shapes[node.input[0]])
            attrs = {a.name: a.i for a in node.attribute}
            dims_of[node.output[0]] = dims[attrs.get("start", 0):attrs.get("end", len(dims))]
    folded = _fold_batch_shape_targets(model, shapes, dims_of) + _pin_inferred_batch(model, shapes, consts)
    for k, node in enumerate(model.graph.node):
        value = None
        if node.op_type == "Shape" and node.output[0] in dims_of:
            value = _static(dims_of[node.output[0]])
        elif node.op_type == "Gather" and node.input[0] in dims_of and node.input[1] in consts:
            dims, idx = dims_of[node.input[0]], consts[node.input[1]]
            if all(-len(dims) <= i < len(dims) for i in idx.reshape(-1)):
                picked = _static([dims[int(i)] for i in idx.reshape(-1)])
                value = None if picked is None else picked.reshape(idx.shape)
        if value is not None:
            model.graph.node[k].CopyFrom(onnx.helper.make_node(
                "Constant", [], [node.output[0]], name=f"{node.name}/onnxcam_static",
                value=numpy_helper.from_array(value, node.output[0])))
            folded += 1
    return folded


def _fold_batch_shape_targets(model: onnx.ModelProto, shapes: dict, dims_of: dict) -> int:
    """Reshape(a, Shape(b)) where b's dims are static but for a batch a shares: the target becomes
    the constant [0, dims...] (0 copies a's batch). The TorchScript exporter writes GroupNorm as
    Reshape -> InstanceNormalization -> Reshape(Shape(x)), which otherwise hides every shape after
    the first GroupNorm (BiT)."""
    done = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in dims_of:
            continue
        dims, data = dims_of[node.input[1]], shapes.get(node.input[0], ())
        if any(a.name == "allowzero" and a.i for a in node.attribute) or len(dims) < 2 or not data:
            continue
        if _static(dims[1:]) is None or isinstance(dims[0], int) or dims[0] != data[0]:
            continue
        target = np.array([0] + list(dims[1:]), np.int64)
        name = f"{node.input[1]}__onnxcam_batch_target{done}"
        model.graph.initializer.append(numpy_helper.from_array(target, name))
        node.input[1] = name
        done += 1
    return done


def _pin_inferred_batch(model: onnx.ModelProto, shapes: dict, consts: dict) -> int:
    """Reshape(a, [-1, d1, ...]) where a is [D, c1, ...] with static c's and Π d = Π c: the -1 can
    only be D, so the target becomes [0, d1, ...] (0 copies a's dim 0), exact whatever D is. Shape
    inference cannot see that -1 = D and names a new symbol, and every tensor after it loses its
    batch: the dynamo exporter writes ShuffleNet's channel shuffle this way (12 catalog layers
    instead of 74)."""
    done = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        target, data = consts[node.input[1]], shapes.get(node.input[0], ())
        if target.ndim != 1 or target.size < 2:
            continue
        if target[0] != -1 or not all(t > 0 for t in target[1:]) or len(data) < 2 or isinstance(data[0], int):
            continue
        rest = _static(list(data[1:]))
        if rest is None or int(np.prod(rest)) != int(np.prod(target[1:])):
            continue
        # allowzero=1 (dynamo writes it) only changes what a 0 in the target means, and this target
        # had none: dropping it lets the new 0 copy the batch
        keep = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend(keep)
        name = f"{node.input[1]}__onnxcam_batch_pin{done}"
        model.graph.initializer.append(numpy_helper.from_array(np.concatenate([[0], target[1:]]).astype(np.int64), name))
        node.input[1] = name
        done += 1
    return done


def _static(dims) -> np.ndarray | None:
    if dims and all(isinstance(d, int) and d > 0 for d in dims):
        return np.array(dims, np.int64)
    return None


def canonical_file(path: str) -> str:
    """Where ort_canonicalize leaves onnxruntime's result for the model spilled to `path`: the
    batching check runs that file instead of serializing the model once more."""
    return os.path.join(os.path.dirname(path), "canonical.onnx")


def light_session_options(ort):
    """Options for the short-lived sessions intake builds (canonicalize, batching check): no
    pre-packed weight copies and no memory arena, since they run once and their memory should go
    back as soon as they are dropped."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # failures are raised and put in words; no log lines
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape-infer (with data propagation) a skeleton of the model and copy the shapes back.

    onnx's shape inference serializes the whole model to C++ and back: four copies of the weights
    at once (3.3 GB peak for VGG-16's 0.5 GB). Large initializers only contribute their type and
    shape, so the skeleton declares them as graph inputs instead; small ones (shape constants that
    data propagation reads) stay as they are."""
    drop_value_info(model)
    skeleton = onnx.ModelProto()
    skeleton.ir_version, skeleton.producer_name = model.ir_version, model.producer_name
    skeleton.opset_import.extend(model.opset_import)
    g = skeleton.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    declared = {vi.name for vi in model.graph.input}
    for t in model.graph.initializer:
        if t.ByteSize() <= _SKELETON_KEEPS_BYTES:
            g.initializer.append(t)
        elif t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise OnnxCamError(f"shape inference failed on the canonical model: {first_line(exc)}") from None
    model.graph.value_info.extend(inferred.graph.value_info)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


# Initializers up to this size stay in the shape-inference skeleton: shape constants are a few
# int64s, and data propagation needs their values.
_SKELETON_KEEPS_BYTES = 4096
