"""The IOBinding path (engine.Session) is the one a CUDA build runs: inputs bound once as OrtValues
on the session's device and reused across runs, outputs bound on the device and copied back. On CPU
it must give exactly what a plain onnxruntime session gives for the same graph and feeds."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

import onnxcam
from onnxcam import engine
from onnxcam.graph.masking import IMAGE, MAPS, masked_scores_graph
from conftest import random_images
from nets import small_cnn


def test_bound_image_and_masks_give_a_plain_sessions_scores_bit_for_bit():
    """Score-CAM's masked graph, its image bound once on the device for several batches of maps."""
    model = small_cnn(size=32)
    ex = onnxcam.Explainer(model, max_batch=4)
    m = ex.model
    graph = masked_scores_graph(m.proto, m.input_name, m.layout, m.image_shape[1:], m.score_name,
                                align_corners=False, eps=0.0)
    x = random_images(1, (3, 32, 32), seed=4)
    maps = np.abs(random_images(10, (1, 8, 8), seed=5))
    ours = ex.masked_scores(x, maps, align_corners=False, eps=0.0)   # three runs of at most 4 maps
    plain = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    batches = engine.even_batches(10, 4)
    assert batches == [(0, 4), (4, 7), (7, 10)]
    want = np.concatenate([plain.run(None, {IMAGE: x, MAPS: maps[a:b]})[0] for a, b in batches])
    assert ours.shape == (10, m.num_classes)
    np.testing.assert_array_equal(ours, want)


def test_an_ortvalue_bound_to_many_runs_is_not_changed_by_them():
    sess = engine.Session(small_cnn(), ["CPUExecutionProvider"])
    assert sess.provider == "CPUExecutionProvider" and sess.device == "cpu"
    x = random_images(3, (3, 32, 32), seed=6)
    bound = sess.to_device(x)
    first = sess.run({"x": bound})["logits"]
    for _ in range(3):
        np.testing.assert_array_equal(sess.run({"x": bound})["logits"], first)
    np.testing.assert_array_equal(bound.numpy(), x)
    assert bound.device_name().lower() == "cpu"


def test_relevance_through_iobinding_equals_a_plain_run_of_the_same_graph():
    ex = onnxcam.Explainer(small_cnn())
    x = random_images(2, (3, 32, 32), seed=7)
    rel = ex.relevance(x, ["input"])["input"]
    key = next(k for k in ex.sessions._sessions if isinstance(k, tuple) and k[0] == "gradient")
    sess, carried = ex.sessions.get(key, None)
    graph = ex.sessions.graph(key)
    plain = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in plain.get_outputs()], plain.run(None, {ex.model.input_name: x})))
    np.testing.assert_array_equal(rel, out[carried[ex.model.input_name][1]])


def test_even_batches_cover_the_rows_in_the_fewest_batches_of_alike_size():
    for total in range(1, 200):
        for step in range(1, 70):
            batches = engine.even_batches(total, step)
            sizes = [b - a for a, b in batches]
            assert batches[0][0] == 0 and batches[-1][1] == total
            assert all(prev[1] == nxt[0] for prev, nxt in zip(batches, batches[1:]))
            assert len(batches) == -(-total // step) and max(sizes) <= step and max(sizes) - min(sizes) <= 1
    assert engine.even_batches(0, 8) == []
