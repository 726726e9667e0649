"""Export a small Keras CNN with tf2onnx: the NHWC-with-Transposes graph style the rewriter must survive.

Why a hand-built model: TensorFlow and tf2onnx are heavy and are not needed at test time, so the
tests use the exported file committed under tests/fixtures/ and this script regenerates it:

    pip install tensorflow-cpu tf2onnx onnxruntime      # in a separate environment
    python converters/export_keras.py --out tests/fixtures/keras_small_nhwc.onnx

The network (seeded random weights, BN statistics perturbed) covers Conv2D, BatchNormalization,
ReLU, DepthwiseConv2D, MaxPooling2D, a residual Add, GlobalAveragePooling2D, Dense and softmax.
The script checks onnxruntime against Keras on random inputs before writing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def build(seed: int = 0, size: int = 32, classes: int = 5):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inp = tf.keras.Input((size, size, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.ReLU(max_value=6.0, name="relu6")(y)
    y = L.Conv2D(8, 1, name="pw")(y)
    x = L.Add(name="residual")([x, y])
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, activation="softmax", name="fc")(x)
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def export(out: Path, seed: int = 0) -> Path:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model = build(seed)
    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    diff = np.abs(sess.run(None, {sess.get_inputs()[0].name: x})[0] - model(x).numpy()).max()
    print(f"{out}: {len(proto.graph.node)} nodes, max |onnxruntime - keras| = {diff:.2e}")
    assert diff < 1e-5
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/keras_small_nhwc.onnx"))
    ap.add_argument("--seed", type=int, default=0)
    export(ap.parse_args(argv).out, ap.parse_args(argv).seed)


if __name__ == "__main__":
    main()
