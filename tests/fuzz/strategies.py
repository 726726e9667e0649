"""Hypothesis strategies, one per family of hostile input. Each draws a `Plan`: a one-line
description plus a function that plants the files of the case in a sandbox and returns the
`harness.Case` to run.

Families: model (mutations of a small CNN), external (external-data locations and offsets),
paddle (mutations of the bundled Paddle classifier), image, args (CLI argument values), sidecar
(manifest contents and the paths it names), preprocess (--preprocess files), output (where results
go), interrupt (Ctrl-C), api (Python API values).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from .harness import Case, snapshot
from .workspace import (LITE0, PADDLE_DIR, PADDLE_NAME, PHOTO, SMALL_CLASSES, SMALL_SIZE, Sandbox,
                        paddle_bytes, small_model, small_model_bytes)

MODEL = "model/model.onnx"
FAST_METHODS = ["gradcam", "hirescam", "scorecam", "eigencam", "lrp", "relevancecam", "gradcam++",
                "guided-backprop"]
ALL_METHODS = ['cam', 'eigencam', 'eigengradcam', 'gradcam', 'gradcam++', 'guided-backprop',
               'guided-gradcam', 'hirescam', 'layercam', 'lrp', 'relevancecam', 'scorecam',
               'scorecam-pgc', 'srmap', 'xgradcam']
SMALL_LAYERS = ["conv1", "relu1", "pool1", "conv2", "feat"]
NASTY_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-30, 1e30, 1e308]
NASTY_INTS = [-(2 ** 31), -1, 0, 1, 2, 3, 7, 31, 33, 1000, 2 ** 31 - 1]


@dataclass
class Plan:
    family: str
    description: str
    make: Callable[[Sandbox], Case]

    def __repr__(self) -> str:
        return f"{self.family}: {self.description}"


def _cli(box: Sandbox, family: str, description: str, argv: list[str], **kw) -> Case:
    return Case(family=family, description=description, cwd=box.root, argv=argv,
                out=kw.pop("out", box.out), secret=box.secret, **kw)


def _fmt(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ============================================================================ model mutations
def _flip_bytes(data: bytes, flips) -> bytes:
    buf = bytearray(data)
    for frac, value in flips:
        buf[min(int(frac * len(buf)), len(buf) - 1)] = value
    return bytes(buf)


def _ints_attr(node, name):
    return next((a for a in node.attribute if a.name == name), None)


def _set_attribute(model: onnx.ModelProto, node_i: int, name: str, value) -> None:
    node = model.graph.node[node_i % len(model.graph.node)]
    attr = _ints_attr(node, name)
    if attr is not None and attr.type == onnx.AttributeProto.INTS and not isinstance(value, str):
        n = len(attr.ints)
        del attr.ints[:]
        attr.ints.extend(value if isinstance(value, list) else [value] * max(n, 1))
        return
    if attr is not None and attr.type == onnx.AttributeProto.INT and isinstance(value, int):
        attr.i = value
        return
    if attr is not None and attr.type == onnx.AttributeProto.FLOAT and isinstance(value, (int, float)):
        attr.f = float(value)
        return
    if attr is not None:
        node.attribute.remove(attr)
    if isinstance(value, list):
        new = helper.make_attribute(name, value, attr_type=onnx.AttributeProto.INTS)
    else:
        new = helper.make_attribute(name, value)
    node.attribute.append(new)


def _set_dim(model: onnx.ModelProto, which: str, index: int, value) -> None:
    vi = model.graph.input[0] if which == "input" else model.graph.output[0]
    dims = vi.type.tensor_type.shape.dim
    if value == "drop":
        del dims[index % len(dims)]
        return
    if value == "extra":
        dims.add().dim_value = 1
        return
    d = dims[index % len(dims)]
    d.Clear()
    if isinstance(value, str):
        d.dim_param = value
    else:
        d.dim_value = value


def _mutate_initializer(model: onnx.ModelProto, index: int, how: str) -> None:
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    t = tensors[index % len(tensors)]  # Paddle exports keep their weights in Constant nodes
    a = numpy_helper.to_array(t).copy()
    values = {"nan_one": np.nan, "inf_one": np.inf, "neg_inf_one": -np.inf, "nan_all": np.nan, "huge": 3e38,
              "zero": 0}
    if how in values:
        v = values[how]
        if a.dtype.kind in "iu" and not np.isfinite(v) or a.dtype.kind in "iu" and abs(v) > 1e18:
            v = np.iinfo(a.dtype).max          # integer tensors (shapes, axes) get their largest value
        elif a.dtype.kind not in "fiu" or a.size == 0:
            return
        if how.endswith("_one"):
            a.flat[0] = v
        else:
            a[...] = v
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif how == "extra_dim":
        t.dims.append(2)
    elif how == "drop_dim" and len(t.dims):
        del t.dims[-1]
    elif how.startswith("dtype_"):
        t.data_type = getattr(TensorProto, how[6:])
    elif how == "empty_data":
        t.raw_data = b""
    elif how == "short_data":
        t.raw_data = t.raw_data[: len(t.raw_data) // 2]


def _mutate_graph(model: onnx.ModelProto, node_i: int, how: str) -> None:
    g = model.graph
    node = g.node[node_i % len(g.node)]
    if how == "remove_node":
        g.node.remove(node)
    elif how.startswith("op_"):
        node.op_type = how[3:]
    elif how == "reverse_order":
        nodes = list(g.node)[::-1]
        del g.node[:]
        g.node.extend(nodes)
    elif how == "missing_output":
        g.output[0].name = "no_such_tensor"
    elif how == "duplicate_node":
        g.node.append(node)
    elif how == "self_loop":
        if node.input:
            node.input[0] = node.output[0]
        else:
            node.input.append(node.output[0])
    elif how == "swap_inputs" and len(node.input) > 1:
        node.input[0], node.input[1] = node.input[1], node.input[0]
    elif how == "two_outputs":
        g.output.append(helper.make_tensor_value_info("feat", TensorProto.FLOAT, None))
    elif how == "second_input":
        g.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 3, 8, 8]))


MODEL_MUTATIONS = st.one_of(
    st.tuples(st.just("bytes"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=12)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("attribute"), st.integers(0, 20),
              st.sampled_from(["kernel_shape", "pads", "strides", "dilations", "group", "axis", "transB",
                               "alpha", "auto_pad", "ceil_mode", "storage_order"]),
              st.one_of(st.sampled_from(NASTY_INTS), st.sampled_from(["SAME_UPPER", "VALID", "BOGUS"]),
                        st.lists(st.sampled_from([-1, 0, 1, 2, 5]), min_size=0, max_size=5))),
    st.tuples(st.just("dims"), st.sampled_from(["input", "output"]), st.integers(0, 3),
              st.sampled_from([0, 1, 2, 3, 31, 33, 100000, 2 ** 40, "H", "drop", "extra"])),
    st.tuples(st.just("elem_type"), st.sampled_from(["FLOAT16", "DOUBLE", "INT64", "UINT8", "STRING", "BOOL"])),
    st.tuples(st.just("initializer"), st.integers(0, 5),
              st.sampled_from(["nan_one", "inf_one", "neg_inf_one", "nan_all", "huge", "zero", "extra_dim",
                               "drop_dim", "dtype_DOUBLE", "dtype_INT64", "dtype_FLOAT16", "dtype_STRING",
                               "empty_data", "short_data"])),
    st.tuples(st.just("opset"), st.sampled_from([1, 6, 9, 11, 13, 16, 18, 21, 99, 10000])),
    st.tuples(st.just("ir_version"), st.sampled_from([0, 1, 3, 7, 10, 99])),
    st.tuples(st.just("graph"), st.integers(0, 20),
              st.sampled_from(["remove_node", "op_Foo", "op_Sigmoid", "op_Identity", "op_Softmax",
                               "op_ConvTranspose", "op_MaxPool", "op_Loop", "reverse_order",
                               "missing_output", "duplicate_node", "self_loop", "swap_inputs",
                               "two_outputs", "second_input"])),
)


def mutated_model(base: bytes, mutation) -> bytes:
    """Apply one drawn mutation to a serialized model."""
    kind = mutation[0]
    if kind == "bytes":
        return _flip_bytes(base, mutation[1])
    if kind == "truncate":
        return base[: int(mutation[1] * len(base))]
    model = onnx.load_model_from_string(base)
    if kind == "attribute":
        _set_attribute(model, mutation[1], mutation[2], mutation[3])
    elif kind == "dims":
        _set_dim(model, mutation[1], mutation[2], mutation[3])
    elif kind == "elem_type":
        model.graph.input[0].type.tensor_type.elem_type = getattr(TensorProto, mutation[1])
    elif kind == "initializer":
        _mutate_initializer(model, mutation[1], mutation[2])
    elif kind == "opset":
        model.opset_import[0].version = mutation[1]
    elif kind == "ir_version":
        model.ir_version = mutation[1]
    elif kind == "graph":
        _mutate_graph(model, mutation[1], mutation[2])
    return model.SerializeToString()


def _model_command(model: str, command: str, method: str, image: str) -> list[str]:
    if command == "layers":
        return ["layers", model, "--json"]
    if command == "export-explainer":
        return ["export-explainer", model, "-o", "out/explain.onnx", "--method", method]
    return ["explain", model, image, "--out", "out", "--method", method]


@st.composite
def model_cases(draw) -> Plan:
    mutation = draw(MODEL_MUTATIONS)
    command = draw(st.sampled_from(["explain", "explain", "explain", "layers", "export-explainer"]))
    method = draw(st.sampled_from(["gradcam", "hirescam"] if command == "export-explainer" else FAST_METHODS))
    desc = f"small CNN with {mutation!r}, {command} {method}"

    def make(box: Sandbox) -> Case:
        box.write_model(mutated_model(small_model_bytes(), mutation))
        box.image()
        argv = _model_command(MODEL, command, method, "img.png")
        out = box.out / "explain.onnx" if command == "export-explainer" else box.out
        return _cli(box, "model", desc, argv, out=None if command == "layers" else out,
                    writes=command != "layers")
    return Plan("model", desc, make)


@st.composite
def paddle_cases(draw) -> Plan:
    mutation = draw(st.one_of(
        st.tuples(st.just("bytes"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=16)),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("attribute"), st.integers(0, 400),
                  st.sampled_from(["kernel_shape", "pads", "strides", "group", "axis", "alpha"]),
                  st.sampled_from(NASTY_INTS)),
        st.tuples(st.just("initializer"), st.integers(0, 400),
                  st.sampled_from(["nan_one", "inf_one", "huge", "extra_dim", "dtype_INT64", "short_data"])),
        st.tuples(st.just("opset"), st.sampled_from([1, 7, 9, 10, 12, 99])),
        st.tuples(st.just("graph"), st.integers(0, 400),
                  st.sampled_from(["remove_node", "op_Foo", "op_Identity", "swap_inputs", "self_loop"])),
    ))
    method = draw(st.sampled_from(["gradcam", "eigencam", "relevancecam"]))
    desc = f"bundled Paddle classifier with {mutation!r}, explain {method}"

    def make(box: Sandbox) -> Case:
        for f in PADDLE_DIR.iterdir():
            if f.suffix in (".json", ".txt"):
                shutil.copy(f, box.model_dir / f.name)
        box.write_model(mutated_model(paddle_bytes(), mutation), PADDLE_NAME)
        return _cli(box, "paddle", desc, ["explain", f"model/{PADDLE_NAME}", str(PHOTO), "--out", "out",
                                          "--method", method])
    return Plan("paddle", desc, make)


# ============================================================================ external data
EXTERNAL_LOCATIONS = ["weights.bin", "ABS_CANARY", "../outside/weights.bin", "sub/../weights.bin",
                      "link.bin", "missing.bin", "", "fifo.bin", "zero.bin", "dir.bin", "C:weights.bin",
                      "./weights.bin"]
OUTSIDE_LOCATIONS = {"ABS_CANARY", "../outside/weights.bin", "link.bin"}


@st.composite
def external_cases(draw) -> Plan:
    location = draw(st.sampled_from(EXTERNAL_LOCATIONS))
    offset = draw(st.sampled_from([None, "0", "abc", "-8", "1.5", "99999999", " 4", "0x10", "",
                                   "18446744073709551616"]))
    length = draw(st.sampled_from([None, "EXACT", "x", "-1", "0", "4", "99999999999"]))
    outside = location in OUTSIDE_LOCATIONS
    desc = f"external data location={location!r} offset={offset!r} length={length!r}"

    def make(box: Sandbox) -> Case:
        model = small_model()
        t = next(t for t in model.graph.initializer if t.name == "wf")
        raw = numpy_helper.to_array(t).tobytes()
        (box.model_dir / "weights.bin").write_bytes(raw)
        (box.outside / "weights.bin").write_bytes(raw)  # the same bytes: only the path can refuse it
        loc = {"ABS_CANARY": str(box.outside / "weights.bin")}.get(location, location)
        if location == "link.bin":
            os.symlink(box.outside / "weights.bin", box.model_dir / "link.bin")
        elif location == "fifo.bin":
            box.fifo(box.model_dir / "fifo.bin")
        elif location == "zero.bin":
            os.symlink("/dev/zero", box.model_dir / "zero.bin")
        elif location == "dir.bin":
            (box.model_dir / "dir.bin").mkdir()
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        entries = {"location": loc, "offset": offset,
                   "length": str(len(raw)) if length == "EXACT" else length}
        for k, v in entries.items():
            if v is not None:
                t.external_data.add(key=k, value=v)
        box.write_model(model)
        box.image()
        return _cli(box, "external", desc, ["explain", MODEL, "img.png", "--out", "out", "--method", "gradcam"],
                    if_accepted="escape" if outside else None, timeout=60)
    return Plan("external", desc, make)


# ============================================================================ images
def _png_with_size(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data is one short IDAT)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose SOF header is patched to claim width x height."""
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    i = data.find(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bmp_with_size(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".bmp", np.zeros((2, 2, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


IMAGE_KINDS = st.one_of(
    st.tuples(st.just("valid"), st.sampled_from([".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm"]),
              st.tuples(st.integers(1, 80), st.integers(1, 80)), st.sampled_from([1, 3, 4]),
              st.sampled_from(["uint8", "uint16", "float32"])),
    st.tuples(st.just("truncated"), st.sampled_from([".png", ".jpg", ".bmp", ".tiff", ".webp"]), st.floats(0, 1)),
    st.tuples(st.just("flipped"), st.sampled_from([".png", ".jpg", ".webp"]),
              st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("claims"), st.sampled_from(["png", "jpeg", "bmp"]),
              st.sampled_from([(30000, 30000), (65535, 65535), (1, 1000000), (2 ** 31 - 1, 1), (0, 0),
                               (100000, 100000), (46000, 46000)])),
    st.tuples(st.just("special"), st.sampled_from(["empty", "random", "text", "directory", "fifo", "dev_zero",
                                                   "missing", "dangling_link", "float_nan_tiff", "1x1",
                                                   "wide", "newline_name"])),
)


def _write_image(box: Sandbox, kind) -> tuple[str, dict]:
    """Plant the drawn image; returns its path relative to the sandbox and extra Case fields."""
    what = kind[0]
    if what == "valid":
        ext, hw, channels, dtype = kind[1:]
        if dtype != "uint8" and ext not in (".png", ".tiff"):
            dtype = "uint8"
        if dtype == "float32":
            ext = ".tiff"
        rng = np.random.default_rng(hw[0] * 100 + hw[1])
        shape = tuple(hw) + ((channels,) if channels > 1 else ())
        img = {"uint8": lambda: (rng.random(shape) * 255).astype(np.uint8),
               "uint16": lambda: (rng.random(shape) * 65535).astype(np.uint16),
               "float32": lambda: rng.random(shape).astype(np.float32)}[dtype]()
        name = "img" + ext
        if not cv2.imwrite(str(box.root / name), img):  # a format that cannot hold this (PPM + alpha)
            cv2.imwrite(str(box.root / name), img[..., :3] if img.ndim == 3 else np.dstack([img] * 3))
        return name, {}
    if what in ("truncated", "flipped"):
        ext = kind[1]
        ok, buf = cv2.imencode(ext, (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8))
        data = buf.tobytes()
        data = data[: int(kind[2] * len(data))] if what == "truncated" else _flip_bytes(data, kind[2])
        (box.root / ("img" + ext)).write_bytes(data)
        return "img" + ext, {}
    if what == "claims":
        fmt, (w, h) = kind[1], kind[2]
        data = {"png": lambda: _png_with_size(w, h), "jpeg": lambda: _jpeg_with_size(min(w, 65535), min(h, 65535)),
                "bmp": lambda: _bmp_with_size(w, h)}[fmt]()
        name = "img." + {"png": "png", "jpeg": "jpg", "bmp": "bmp"}[fmt]
        (box.root / name).write_bytes(data)
        return name, {}
    special = kind[1]
    name = "img.png"
    p = box.root / name
    if special == "empty":
        p.write_bytes(b"")
    elif special == "random":
        p.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif special == "text":
        p.write_text("not an image\n")
    elif special == "directory":
        p.mkdir()
    elif special == "fifo":
        box.fifo(p)
    elif special == "dev_zero":
        os.symlink("/dev/zero", p)
    elif special == "missing":
        pass
    elif special == "dangling_link":
        os.symlink(box.root / "nowhere.png", p)
    elif special == "float_nan_tiff":
        name = "img.tiff"
        img = np.full((16, 16, 3), np.nan, np.float32)
        cv2.imwrite(str(box.root / name), img)
    elif special == "1x1":
        cv2.imwrite(str(p), np.zeros((1, 1, 3), np.uint8))
    elif special == "wide":
        cv2.imwrite(str(p), np.zeros((1, 20000, 3), np.uint8))
    elif special == "newline_name":
        name = "a\nb.png"
        cv2.imwrite(str(box.root / name), np.zeros((8, 8, 3), np.uint8))
    return name, {"timeout": 60}


@st.composite
def image_cases(draw) -> Plan:
    kind = draw(IMAGE_KINDS)
    with_good = draw(st.booleans())
    method = draw(st.sampled_from(["gradcam", "scorecam", "eigencam"]))
    desc = f"image {kind!r}" + (" after a good image" if with_good else "") + f", explain {method}"

    def make(box: Sandbox) -> Case:
        box.write_model(small_model_bytes())
        name, extra = _write_image(box, kind)
        images = ([str(box.image("good.png").name)] if with_good else []) + [name]
        return _cli(box, "image", desc, ["explain", MODEL, *images, "--out", "out", "--method", method], **extra)
    return Plan("image", desc, make)


# ============================================================================ CLI arguments
def _floats_arg(values) -> list[str]:
    return [_fmt(v) for v in values]


def _maybe(draw, values):
    """None two times in three, else one of values: a few odd flags per case, not all at once."""
    return draw(st.one_of(st.none(), st.none(), st.sampled_from(values)))


@st.composite
def _preprocess_flags(draw) -> tuple[list[str], list[str]]:
    """(flags, reasons they are invalid)."""
    flags, bad = [], []
    size = _maybe(draw, [(32, 32), (0, 0), (-1, 32), (31, 32), (100000, 100000), (32, 0)])
    if size is not None:
        flags += ["--size", *map(str, size)]
        if size != (32, 32):
            bad.append(f"--size {size}")
    for name in ("--mean", "--std"):
        vals = draw(st.one_of(st.none(), st.none(), st.lists(st.sampled_from([0.5, 0.25, 0.0, -1.0, math.nan, math.inf, 1e30]),
                                                  min_size=1, max_size=5)))
        if vals is not None:
            flags += [name, *_floats_arg(vals)]
            if len(vals) not in (1, 3) or not all(math.isfinite(v) for v in vals) or (
                    name == "--std" and any(v <= 0 for v in vals)):
                bad.append(f"{name} {vals}")
    scale = _maybe(draw, [1 / 255, 0.0, -1.0, math.nan, math.inf, 1e30])
    if scale is not None:
        flags += [f"--scale={_fmt(scale)}"]
        if not math.isfinite(scale) or scale == 0:
            bad.append(f"--scale {scale}")
    flags += draw(st.sampled_from([[], ["--channel-order", "BGR"], ["--layout", "NHWC"], ["--resize", "center_crop"]]))
    if "NHWC" in flags:
        bad.append("--layout NHWC on an NCHW model")
    return flags, bad


@st.composite
def _engine_flags(draw) -> tuple[list[str], list[str]]:
    flags, bad = [], []
    mb = _maybe(draw, [1024.0, 0.0, -1.0, 1e-9, math.nan, math.inf, -math.inf, 1e12])
    if mb is not None:
        flags += [f"--memory-budget-mb={_fmt(mb)}"]
        if not math.isfinite(mb) or mb <= 0:
            bad.append(f"--memory-budget-mb {mb}")
    batch = _maybe(draw, [1, 0, -1, 10 ** 9])
    if batch is not None:
        flags += ["--max-batch", str(batch)]
        if batch < 1:
            bad.append(f"--max-batch {batch}")
    providers = _maybe(draw, [["CPUExecutionProvider"], ["NoSuchProvider"], ["CUDAExecutionProvider"]])
    if providers:
        flags += ["--providers", *providers]
    return flags, bad


def _target(draw, n_images: int) -> tuple[list[str], list[str]]:
    t = _maybe(draw, ["top1", "0", "9", "10", "-1", "-11", "1,2", "1,2,3", "a", "", "1,,2",
                              "99999999999999999999", " 3", "1.5"])
    if t is None:
        return [], []
    good = t == "top1" or t in ("0", "9", " 3") or (t == "1,2" and n_images == 2)
    return [f"--target={t}"], ([] if good else [f"--target {t!r}"])


def _layers(draw, many: bool) -> list[str]:
    pool = ["auto", "all", *SMALL_LAYERS, "no_such_layer", "", "x", "logits", "blk/act", "blk_act"]
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3 if many else 1, unique=True))


def _colliding_model() -> onnx.ModelProto:
    """Two catalog layers whose names map to one file-name part: 'blk/act' and 'blk_act'."""
    model = small_model()
    rename = {"relu1": "blk/act", "feat": "blk_act"}
    for node in model.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    return model


@st.composite
def args_cases(draw) -> Plan:
    command = draw(st.sampled_from(["explain", "explain", "evaluate", "compare", "export-explainer"]))
    n_images = draw(st.integers(1, 2))
    colliding = draw(st.booleans())
    images = ["img.png", "img2.png"][:n_images]
    pre, bad_pre = draw(_preprocess_flags())
    eng, bad_eng = draw(_engine_flags())
    bad = bad_pre + bad_eng
    argv: list[str]
    if command == "explain":
        method = draw(st.sampled_from(ALL_METHODS))
        layers = ["blk/act", "blk_act"] if colliding and draw(st.booleans()) else _layers(draw, True)
        tflags, tbad = _target(draw, n_images)
        argv = ["explain", MODEL, *images, "--out", "out", "--method", method, "--layer", *layers, *tflags]
        bad += tbad
        if method.startswith("scorecam"):
            k = _maybe(draw, [-1, 0, 1, 5, 16, 10 ** 9])
            if k is not None:
                argv += ["--top-k", str(k)]
                if k < 1:
                    bad.append(f"--top-k {k}")
        if method in ("lrp", "relevancecam"):
            argv += draw(st.sampled_from([[], ["--composite", "epsilon"], ["--composite", "nope"],
                                          ["--start", "contrastive"], ["--composite", ""]]))
        if draw(st.booleans()):
            argv.append("--json")
    elif command == "evaluate":
        methods = draw(st.sampled_from(["gradcam", "", ",", "gradcam,gradcam", "gradcam, eigencam", "nope",
                                        "gradcam,,scorecam", " "]))
        if not [m for m in methods.split(",") if m.strip()]:
            bad.append(f"--methods {methods!r}")
        steps = _maybe(draw, [1, 2, 5, 0, -1])
        sanity = _maybe(draw, [[1], [1, 2], [0], [-1], [1000]])
        argv = ["evaluate", MODEL, *images, "--out", "out", "--methods", methods, "--no-road",
                "--layers", *_layers(draw, False)]
        if steps is not None:
            argv += ["--steps", str(steps)]
            if steps < 1:
                bad.append(f"--steps {steps}")
        if sanity is not None:
            argv += ["--sanity", *map(str, sanity)]
            if min(sanity) < 1:
                bad.append(f"--sanity {sanity}")
        boxes = _maybe(draw, ["good", "list", "nan", "outside", "bad_json"])
        if boxes:
            argv += ["--boxes", "boxes.json"]
            if boxes != "good":
                bad.append(f"--boxes {boxes}")
    elif command == "compare":
        fail_under = _maybe(draw, [0.5, 0.0, 1.0, -1.0, 2.0, math.nan, math.inf, -math.inf])
        top_percent = _maybe(draw, [20.0, 100.0, 0.0, -5.0, 101.0, 1e-9, math.nan, math.inf])
        gate = draw(st.sampled_from(["pearson", "spearman", "iou", "top1"]))
        candidate = draw(st.sampled_from(["same", "nan_weights", "other_classes"]))
        argv = ["compare", MODEL, "model/cand.onnx", *images, "--out", "out", "--gate", gate,
                "--method", draw(st.sampled_from(["gradcam", "eigencam", "scorecam"])),
                "--layers", *_layers(draw, False)]
        match = _maybe(draw, ["feat=feat", "feat=nope", "=", "feat", "a=b=c"])
        if match:
            argv += ["--match", match]
        if fail_under is not None:
            argv += [f"--fail-under={_fmt(fail_under)}"]
            if not math.isfinite(fail_under):
                bad.append(f"--fail-under {fail_under}")
        if top_percent is not None:
            argv += [f"--top-percent={_fmt(top_percent)}"]
            if not (math.isfinite(top_percent) and 0 < top_percent <= 100):
                bad.append(f"--top-percent {top_percent}")
        if candidate != "same":
            bad.append(f"candidate {candidate}")
    else:
        method = draw(st.sampled_from(["gradcam", "hirescam", "relevancecam"]))
        argv = ["export-explainer", MODEL, "-o", "out/explain.onnx", "--method", method,
                "--layer", _layers(draw, False)[0], "--target", draw(st.sampled_from(["top1", "input"]))]
    argv += pre + eng
    desc = ("[colliding layer names] " if colliding else "") + " ".join(a if a else "''" for a in argv)

    def make(box: Sandbox) -> Case:
        box.write_model(_colliding_model() if colliding else small_model_bytes())
        box.image("img.png", seed=0)
        box.image("img2.png", hw=(60, 30), seed=1)
        if command == "compare":
            cand = {"same": lambda: small_model_bytes(),
                    "nan_weights": lambda: mutated_model(small_model_bytes(), ("initializer", 4, "nan_all")),
                    "other_classes": lambda: small_cnn_bytes(classes=7)}[candidate]()
            box.write_model(cand, "cand.onnx")
        if command == "evaluate" and "--boxes" in argv:
            (box.root / "boxes.json").write_text(_boxes_text(boxes))
        out = box.out / "explain.onnx" if command == "export-explainer" else box.out
        return _cli(box, "args", desc, argv, out=out, if_accepted="silent_wrong" if bad else None)
    return Plan("args", desc, make)


def small_cnn_bytes(classes: int = SMALL_CLASSES, size: int = SMALL_SIZE) -> bytes:
    from nets import small_cnn
    return small_cnn(size=size, classes=classes).SerializeToString()


def _boxes_text(kind: str) -> str:
    return {"good": json.dumps({"boxes": {"img.png": [[0.1, 0.1, 0.9, 0.9]]}}),
            "list": "[1, 2, 3]",
            "nan": '{"boxes": {"img.png": [[NaN, 0, 1, 1]]}}',
            "outside": json.dumps({"boxes": {"img.png": [[-5, -5, 50, 50]]}}),
            "bad_json": "{"}[kind]


# ============================================================================ sidecar / --preprocess
SIDECAR_FIELDS = {
    "size": [[32, 32], [0, 0], [-1, 32], "ab", None, [32], [32, 32, 3], [1e9, 1e9], [32.5, 32], [True, True],
             {"h": 32}],
    "input_size": [[32, 32], [31, 31], "x"],
    "mean": [[0.5, 0.5, 0.5], [], [0.5], [0.1, 0.2], "abc", None, [float("nan")] * 3, [[1]]],
    "std": [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0.5], [-1, -1, -1], "s", [1e-45] * 3, None],
    "scale": [1 / 255, "x", 0, -1, None, [1], float("inf")],
    "channel_order": ["RGB", "BGR", "rgb", 5, None],
    "layout": ["NCHW", "NHWC", "CHW", 0],
    "resize": ["stretch", "center_crop", "fill", None],
    "crop_fraction": [0.875, 0, -1, 2.0, "x", float("nan")],
    "labels": ["GOOD", "SHORT", "NON_UTF8", "EMPTY", "DIR", "FIFO", "DEV_ZERO", "ABS_CANARY", "DOTDOT_CANARY",
               "LINK_CANARY", "MISSING", "HUGE", 5, [], None, {"a": 1}, "", "labels.txt\x00x", "CRLF"],
    "model": ["model.onnx", "ABS_CANARY", "../outside/secret.txt"],
}
# A sidecar is raw bytes, or a dict with one or two fields set (one odd value decides the case).
SIDECAR_DOCS = st.one_of(
    st.sampled_from([b"", b"[]", b"null", b"5", b'"x"', b"\xff\xfe{}", b"{", b'{"size": [32, 32]}' * 2,
                     b"[" * 100000 + b"]" * 100000, b'{"scale": 1e999}', b'{"mean": NaN}']),
    st.lists(st.sampled_from([(k, v) for k, values in SIDECAR_FIELDS.items() for v in values]),
             min_size=1, max_size=2).map(dict),
    st.sampled_from(SIDECAR_FIELDS["labels"]).map(lambda v: {"labels": v}),
)
OUTSIDE_LABELS = {"ABS_CANARY", "DOTDOT_CANARY", "LINK_CANARY"}


def _sidecar_bytes(box: Sandbox, doc) -> bytes:
    if isinstance(doc, bytes):
        return doc
    doc = dict(doc)
    labels = doc.get("labels")
    if isinstance(labels, str) and labels.isupper() and labels.replace("_", "").isalpha():
        doc["labels"] = _plant_labels(box, labels)
    if doc.get("model") == "ABS_CANARY":
        doc["model"] = str(box.canary_labels())
    return json.dumps(doc).encode()


def _plant_labels(box: Sandbox, kind: str) -> str:
    d = box.model_dir
    if kind == "GOOD":
        return box.labels().name
    if kind == "SHORT":
        return box.labels(3).name
    if kind == "NON_UTF8":
        (d / "labels.txt").write_bytes(b"".join(b"\xff\xfe class %d\n" % i for i in range(SMALL_CLASSES)))
    elif kind == "EMPTY":
        (d / "labels.txt").write_bytes(b"")
    elif kind == "DIR":
        (d / "labels.txt").mkdir()
    elif kind == "FIFO":
        box.fifo(d / "labels.txt")
    elif kind == "DEV_ZERO":
        return "/dev/zero"
    elif kind == "ABS_CANARY":
        return str(box.canary_labels())
    elif kind == "DOTDOT_CANARY":
        box.canary_labels()
        return "../outside/secret.txt"
    elif kind == "LINK_CANARY":
        os.symlink(box.canary_labels(), d / "labels.txt")
    elif kind == "HUGE":
        (d / "labels.txt").write_bytes(b"x" * (64 << 20))
    elif kind == "CRLF":
        (d / "labels.txt").write_bytes(b"".join(b"c%d\r\n" % i for i in range(SMALL_CLASSES)))
    elif kind == "MISSING":
        pass
    return "labels.txt"


@st.composite
def sidecar_cases(draw) -> Plan:
    doc = draw(SIDECAR_DOCS)
    name = draw(st.sampled_from(["model.onnx.json", "model.json", "manifest.json"]))
    desc = f"sidecar {name} = {_short(doc)}"
    outside = isinstance(doc, dict) and isinstance(doc.get("labels"), str) and doc["labels"] in OUTSIDE_LABELS

    def make(box: Sandbox) -> Case:
        box.write_model(small_model_bytes())
        box.image()
        (box.model_dir / name).write_bytes(_sidecar_bytes(box, doc))
        return _cli(box, "sidecar", desc, ["explain", MODEL, "img.png", "--out", "out", "--method", "gradcam"],
                    timeout=90, if_accepted="escape" if outside else None)
    return Plan("sidecar", desc, make)


@st.composite
def preprocess_cases(draw) -> Plan:
    where = draw(st.sampled_from(["file", "file", "file", "fifo", "dev_zero", "directory", "missing"]))
    doc = draw(SIDECAR_DOCS) if where == "file" else None
    desc = f"--preprocess {where}" + (f" = {_short(doc)}" if doc is not None else "")

    def make(box: Sandbox) -> Case:
        box.write_model(small_model_bytes())
        box.image()
        path = box.root / "pre.json"
        if where == "file":
            path.write_bytes(_sidecar_bytes(box, doc))
        elif where == "fifo":
            box.fifo(path)
        elif where == "dev_zero":
            path = Path("/dev/zero")
        elif where == "directory":
            path.mkdir()
        return _cli(box, "preprocess", desc, ["explain", MODEL, "img.png", "--out", "out", "--method", "gradcam",
                                              "--preprocess", str(path)], timeout=60)
    return Plan("preprocess", desc, make)


def _short(doc) -> str:
    text = repr(doc)
    return text if len(text) < 160 else text[:150] + f"... ({len(text)} chars)"


# ============================================================================ outputs
OUTPUT_SITUATIONS = ["fresh", "nested", "out_is_file", "existing_targets", "existing_targets_overwrite",
                     "directory_at_target", "directory_at_target_overwrite", "long_name", "disk_full",
                     "disk_full_early", "proc",
                     "dev_null", "under_a_file",
                     "read_only", "other_files_kept"]


@st.composite
def output_cases(draw) -> Plan:
    situation = draw(st.sampled_from(OUTPUT_SITUATIONS))
    command = draw(st.sampled_from(["explain", "explain", "evaluate", "compare", "export-explainer"]))
    desc = f"output {situation}, {command}"

    def make(box: Sandbox) -> Case:
        box.write_model(small_model_bytes())
        image = box.image().name
        out = box.out
        kw: dict = {}
        if situation == "nested":
            out = box.root / "a" / "b" / "c"
        elif situation == "out_is_file":
            out.write_bytes(b"keep me")
        elif situation.startswith(("existing_targets", "directory_at_target")):
            out.mkdir()
            names = {"explain": ["img_gradcam.npz", "img_gradcam_feat.png"],
                     "evaluate": ["evaluation.json", "report.html"],
                     "compare": ["comparison.json", "report.html"],
                     "export-explainer": ["explain.onnx"]}[command]
            for n in names:
                if situation.startswith("directory_at_target"):
                    (out / n).mkdir()
                else:
                    (out / n).write_bytes(b"keep me " + n.encode())
        elif situation == "other_files_kept":
            out.mkdir()
            (out / "notes.txt").write_bytes(b"mine")
        elif situation == "long_name":
            image = "i" * 240 + ".png"
            box.image(image)
        elif situation == "disk_full":  # room for the temporary canonical model, not for the results
            box.write_model(small_cnn_bytes(size=256))
            kw["fsize_limit"] = 64 << 10
        elif situation == "disk_full_early":  # not even room for the temporary canonical model
            kw["fsize_limit"] = 600
        elif situation == "proc":
            out = Path("/proc/onnxcam-fuzz/out")
        elif situation == "dev_null":
            out = Path("/dev/null/out")
        elif situation == "under_a_file":
            (box.root / "file").write_bytes(b"keep me")
            out = box.root / "file" / "out"
        elif situation == "read_only":
            out.mkdir()
            os.chmod(out, 0o555)
        argv = {"explain": ["explain", MODEL, image, "--out", str(out), "--method", "gradcam"],
                "evaluate": ["evaluate", MODEL, image, "--out", str(out), "--methods", "gradcam", "--no-road",
                             "--steps", "2"],
                "compare": ["compare", MODEL, MODEL, image, "--out", str(out)],
                "export-explainer": ["export-explainer", MODEL, "-o", str(out / "explain.onnx")]}[command]
        if situation.endswith("_overwrite"):
            argv.append("--overwrite")
        protected = [p for p in [box.out, box.root / "file"] if p.is_file()]
        if out.is_dir() and os.access(out, os.W_OK):
            protected += [p for p in out.iterdir() if p.is_file()]
        checked = out if str(out).startswith(str(box.root)) else None
        return _cli(box, "output", desc, argv, out=checked, protected=snapshot(protected), **kw)
    return Plan("output", desc, make)


# ============================================================================ Ctrl-C
@st.composite
def interrupt_cases(draw) -> Plan:
    after = draw(st.sampled_from([1.5, 2.5, 4.0, 6.0]))
    command = draw(st.sampled_from(["explain", "evaluate"]))
    desc = f"Ctrl-C after {after} CPU seconds of {command} on the bundled Lite0"

    def make(box: Sandbox) -> Case:
        argv = (["explain", str(LITE0), str(PHOTO), "--out", "out", "--method", "scorecam"] if command == "explain"
                else ["evaluate", str(LITE0), str(PHOTO), "--out", "out", "--methods", "gradcam,scorecam"])
        return _cli(box, "interrupt", desc, argv, interrupt_after=after, timeout=120, rss_limit_mb=4096)
    return Plan("interrupt", desc, make)


@st.composite
def progress_cases(draw) -> Plan:
    """A long run whose stderr is not a terminal must still say it is alive (then Ctrl-C ends it)."""
    method = draw(st.sampled_from(["scorecam", "scorecam-pgc"]))
    desc = f"explain --layer all --method {method} on the bundled Lite0, stderr not a terminal"

    def make(box: Sandbox) -> Case:
        argv = ["explain", str(LITE0), str(PHOTO), "--out", "out", "--method", method, "--layer", "all"]
        return _cli(box, "progress", desc, argv, silence=30, interrupt_after=30, timeout=120, rss_limit_mb=4096)
    return Plan("progress", desc, make)


FAMILIES = {"model": model_cases, "external": external_cases, "paddle": paddle_cases, "image": image_cases,
            "args": args_cases, "sidecar": sidecar_cases, "preprocess": preprocess_cases,
            "output": output_cases, "interrupt": interrupt_cases, "progress": progress_cases}
