"""The memory reductions change nothing but memory: shape inference on a weight-free skeleton gives
the shapes full inference gives, the session cache honours its count and weight limits, and the
batch size comes from the graph it no longer keeps."""
from __future__ import annotations

import copy

import onnx
import pytest

from conftest import LITE0, PADDLE_CLS
from nets import small_cnn
from onnxcam import engine
from onnxcam.intake import canonical
from onnxcam.intake.loading import load_model


@pytest.mark.parametrize("path", [LITE0, PADDLE_CLS], ids=["lite0", "paddle"])
def test_skeleton_shape_inference_equals_full_inference(path, tmp_path):
    model = canonical.upgrade_opset(load_model(path))
    canon = canonical.ort_canonicalize(canonical.spill(model, str(tmp_path)))
    full = onnx.ModelProto()
    full.CopyFrom(canon)
    canonical.drop_value_info(full)
    full = onnx.shape_inference.infer_shapes(full, strict_mode=False, data_prop=True)
    ours = canonical.infer_shapes(canon)
    assert {v.name: v.type for v in ours.graph.value_info} == {v.name: v.type for v in full.graph.value_info}
    assert [o.type for o in ours.graph.output] == [o.type for o in full.graph.output]
    assert len(ours.graph.initializer) == len(full.graph.initializer)  # the weights stay in the model


def test_session_cache_honours_count_and_weight_limits():
    graph = small_cnn()
    weights = engine.weight_bytes(graph)
    built = []

    def build():   # a graph of its own per build, as the graph builders make (the cache consumes it)
        built.append(1)
        return copy.deepcopy(graph), None

    by_count = engine.SessionCache(["CPUExecutionProvider"], size=2, weight_budget_mb=1e6)
    for key in ("a", "b", "c"):
        by_count.get(key, build)
    assert list(by_count._sessions) == ["b", "c"]
    by_count.get("b", build)                      # a hit: no build, becomes the most recent
    assert len(built) == 3 and list(by_count._sessions) == ["c", "b"]

    by_weight = engine.SessionCache(["CPUExecutionProvider"], size=8, weight_budget_mb=1.5 * weights / 2**20)
    for key in ("a", "b"):
        by_weight.get(key, build)
    assert list(by_weight._sessions) == ["b"]    # two graphs' weights are over the budget
    tiny = engine.SessionCache(["CPUExecutionProvider"], weight_budget_mb=1e-6)
    tiny.get("a", build)
    assert list(tiny._sessions) == ["a"]          # the newest session stays, whatever its size


def test_batch_size_from_the_cached_per_sample_bytes():
    graph = small_cnn()
    cache = engine.SessionCache(["CPUExecutionProvider"])
    cache.get("k", lambda: (copy.deepcopy(graph), None))
    assert cache.per_sample("k") == engine.per_sample_bytes(graph)
    assert engine.batch_size(cache.per_sample("k"), 1e9, 64) == engine.batch_size(graph, 1e9, 64)
    assert len(cache.graph("k").graph.node) == len(graph.graph.node)  # built again on request


def test_serialized_parts_join_to_the_same_model():
    """The session cache serializes graphs in parts (initializers one by one, framed by hand) so it
    can free the message before joining them: the joined bytes parse to the very same model, for a
    graph with weights (lengths of 1 to 4 varint bytes: Lite0's body is 18 MB) and without."""
    empty = small_cnn()
    del empty.graph.initializer[:]
    for model in (small_cnn(), onnx.load(str(LITE0)), empty):
        reference = copy.deepcopy(model)
        joined = b"".join(engine.serialized_parts(model))
        assert len(joined) == len(reference.SerializeToString())
        assert onnx.load_from_string(joined) == reference
