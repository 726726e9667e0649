"""Export Keras applications (random init) with tf2onnx, for the CNN zoo sweep (tests/zoo/sweep.py).

Why: tf2onnx writes graphs no PyTorch exporter does (NHWC input with Transposes, Keras' Rescaling and
Normalization layers as Mul/Add/Sub/Div, HardSwish as Mul(x, HardSigmoid), Gelu as Erf, LayerNorm
as ReduceMean chains), so the zoo covers them. TensorFlow must not enter the project's environment:
run this in a separate venv (versions this was made with: Python 3.11, tensorflow-cpu 2.15.1,
keras 2.15.0, tf2onnx 1.16.1, onnx 1.17.0, onnxruntime 1.26.0):

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install "tensorflow-cpu==2.15.*" "tf2onnx==1.16.1" onnxruntime
    /work/tfvenv/bin/python converters/export_keras_apps.py --out-dir /tmp/keras_apps
    /work/tfvenv/bin/python converters/export_keras_apps.py --only MobileNetV3Small-tiny \\
        --out-dir tests/fixtures --name keras_mobilenetv3small_tiny.onnx

Every model: weights=None (seeded random init), 10 classes, BatchNorm statistics and ConvNeXt's
layer scales set as a trained model's would be (see perturb(): at init they are 0/1 and 1e-6,
which hides most of the network from gradients), exported at opset 17 with a dynamic batch
(grouped convolutions un-jitted for tf2onnx, see unjit_grouped_convs). Before writing, the
onnxruntime output is compared with Keras' on random images (max abs difference < 1e-4 of the
output scale). Next to each model.onnx a `<name>.json` says its preprocessing (raw 0..255 pixels
where the application rescales itself), which onnxcam reads as a sidecar; a refusal writes only
the `.json`, saying why, and the sweep puts it in its table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CLASSES = 10
RAW = {"scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}            # the model rescales 0..255 itself
SIGNED = {"scale": 1.0 / 127.5, "mean": [1, 1, 1], "std": [1, 1, 1]}   # the application expects [-1, 1]

# name -> (keras.applications constructor, keyword arguments, input size, preprocessing)
APPS = {
    "MobileNetV3Small": ("MobileNetV3Small", {"include_preprocessing": True}, 64, RAW),
    "EfficientNetV2B0": ("EfficientNetV2B0", {"include_preprocessing": True}, 64, RAW),
    "ConvNeXtTiny": ("ConvNeXtTiny", {"include_preprocessing": True}, 64, RAW),
    "ResNet50V2": ("ResNet50V2", {}, 64, SIGNED),
    "Xception": ("Xception", {}, 96, SIGNED),   # Keras refuses inputs under 71 px
    # the suite's fixture: < 3 MB, keeps the Rescaling layer, HardSwish and squeeze-excitation
    "MobileNetV3Small-tiny": ("MobileNetV3Small", {"include_preprocessing": True, "alpha": 0.75,
                                                   "minimalistic": False}, 64, RAW),
}


def build(name: str, seed: int = 0):
    import tensorflow as tf

    ctor, kwargs, size, _ = APPS[name]
    tf.keras.utils.set_random_seed(seed)
    kwargs = dict(kwargs)
    if name == "MobileNetV3Small-tiny":  # a slim head: the default 1024-wide last conv is 3/4 of the file
        kwargs["include_top"] = False
        kwargs["pooling"] = "avg"
    model = getattr(tf.keras.applications, ctor)(weights=None, input_shape=(size, size, 3), classes=CLASSES,
                                                 **kwargs)
    if name == "MobileNetV3Small-tiny":
        out = tf.keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(model.output)
        model = tf.keras.Model(model.input, out)
    perturb(model, np.random.default_rng(seed), size, APPS[name][3])
    return model


def perturb(model, rng, size: int, prep: dict) -> None:
    """Give a random-init application the signal of a trained one. BatchNorm's moving statistics
    are set to those of one batch of random images (momentum 0, one training-mode pass), then its
    affine parameters and statistics perturbed; ConvNeXt's layer scales go from 1e-6 to O(1).
    Without this, activations shrink layer by layer (BN divides by a variance of 1 that is not
    theirs, HardSwish then sits at its slope 1/2 around 0) and dS/dA at early layers falls to
    ~1e-11, below what float64 finite differences resolve."""
    import tensorflow as tf

    bns = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    pixels = rng.uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    model(pixels * prep["scale"] - np.float32(prep["mean"][0]), training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + rng.normal(0, 0.2, beta.shape),
                        mean + rng.normal(0, 0.05, mean.shape) * np.sqrt(var), var * rng.uniform(0.8, 1.2, var.shape)])
    for add in model.layers:  # residual branches end small, as in trained nets
        if isinstance(add, tf.keras.layers.Add):
            for end in add.input if isinstance(add.input, list) else [add.input]:
                shrink_branch_end(end, rng)
    for layer in model.layers:
        if "layer_scale" in layer.name and layer.get_weights():
            (gamma,) = layer.get_weights()
            layer.set_weights([rng.uniform(0.1, 0.5, gamma.shape).astype(gamma.dtype)])
    # logits of a few units, as a trained classifier's: a saturated softmax checks nothing below
    head = [layer for layer in model.layers if layer.get_weights()][-1]   # Dense, or a 1x1 Conv2D
    x = pixels * prep["scale"] - np.float32(prep["mean"][0])
    kernel, bias = head.get_weights()
    features = tf.keras.Model(model.input, head.input)(x).numpy().reshape(len(x), -1)
    logits = features @ kernel.reshape(features.shape[1], -1)
    head.set_weights([kernel * (3.0 / max(float(logits.std()), 1e-12)), bias])


def shrink_branch_end(tensor, rng) -> None:
    """Scale the BatchNorm (gamma, beta) or convolution producing one input of a residual Add to
    0.1-0.3 of its size. With unit-gain branches a random-init EfficientNetV2 is chaotic: the
    residual stream grows to ~1e4 and float32 rounding (oneDNN vs onnxruntime) moves its softmax by
    0.1, so no export check can pass; trained nets end branches small (zero-init-residual)."""
    import tensorflow as tf

    layer = tensor._keras_history.layer
    while isinstance(layer, tf.keras.layers.Dropout) and layer._inbound_nodes:
        layer = layer.input._keras_history.layer
    weights = layer.get_weights()
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        gamma, beta, mean, var = weights
        factor = rng.uniform(0.1, 0.3, gamma.shape)
        layer.set_weights([gamma * factor, beta * factor, mean, var])
    elif isinstance(layer, tf.keras.layers.Conv2D) and weights:
        layer.set_weights([weights[0] * rng.uniform(0.1, 0.3), *weights[1:]])


def unjit_grouped_convs(model) -> int:
    """Let tf2onnx see grouped Conv2D (ConvNeXt's depthwise 7x7) as a Conv2D op. Keras 2.15 runs
    them in a `tf.function(jit_compile=True)` (TensorFlow's CPU kernels have no groups), which
    tf2onnx 1.16.1 keeps as an opaque PartitionedCall and onnxruntime refuses ("No Op registered
    for PartitionedCall"). The plain op converts to an ONNX Conv with `group`; Keras' own output,
    the reference, is computed before this. Returns how many layers were changed."""
    import tensorflow as tf

    changed = 0
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D) and layer.groups > 1:
            layer._jit_compiled_convolution_op = layer.convolution_op
            changed += 1
    return changed


def export(name: str, out: Path, seed: int = 0, opset: int = 17) -> Path | None:
    """Export one application; on a refusal (tf2onnx, onnxruntime, or outputs that disagree) no
    model is written and `<name>.json` says why, for the sweep's table. Returns the model path."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model = build(name, seed)
    size, prep = APPS[name][2], APPS[name][3]
    meta = {"application": APPS[name][0], "kwargs": APPS[name][1], "size": [size, size], "layout": "NHWC",
            **prep, "seed": seed, "opset": opset, "tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    pixels = np.random.default_rng(seed + 1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    x = pixels * prep["scale"] - np.float32(prep["mean"][0])
    want = model(x, training=False).numpy()
    meta["grouped_convs_unjitted"] = unjit_grouped_convs(model)
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    except Exception as exc:  # the converter's or runtime's refusal, recorded for the sweep
        meta["export"] = f"export failed: {str(exc).strip().splitlines()[0][:200]}"
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: {meta['export']}", flush=True)
        return None
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    print(f"{name}: {len(proto.graph.node)} nodes, {proto.ByteSize() / 1e6:.1f} MB, "
          f"max |onnxruntime - keras| = {diff:.2e} (output scale {scale:.2e})", flush=True)
    meta["max_abs_diff_vs_keras"] = diff
    if not diff <= 1e-4 * max(scale, 1e-6):
        meta["export"] = f"export failed: onnxruntime and Keras disagree by {diff:.1e} (output scale {scale:.1e})"
    else:
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return out if out.exists() else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--only", nargs="*", choices=list(APPS), help="applications (default: all but the fixture)")
    ap.add_argument("--name", help="file name when one application is exported (default <app>.onnx)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = args.only or [n for n in APPS if not n.endswith("-tiny")]
    for name in names:
        file = args.name if args.name and len(names) == 1 else f"{name}.onnx"
        export(name, args.out_dir / file, args.seed)


if __name__ == "__main__":
    main()
