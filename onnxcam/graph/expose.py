"""Forward explain graphs: the canonical model with the score and chosen feature maps as outputs."""
from __future__ import annotations

import copy

import onnx
from onnx import helper

from .builder import GraphBuilder

SCORES = "onnxcam/scores"


def prune(graph: onnx.GraphProto) -> None:
    """Keep only nodes and initializers the graph outputs need, so no time goes to unused branches."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraph inputs (If/Loop) keep their outer tensors
                if attr.type == onnx.AttributeProto.GRAPH:
                    needed.update(i for n in attr.g.node for i in n.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    vis = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    return {vi.name: vi.type.tensor_type.elem_type for vi in vis}


def as_float(b: GraphBuilder, name: str, types: dict[str, int], out: str | None = None) -> str:
    """Cast FP16 (or other) tensors to float32 so every output we read is float32."""
    if types.get(name, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT:
        return b.op("Identity", [name], outputs=[out]) if out else name
    return b.op("Cast", [name], outputs=[out] if out else 1, hint="to_float", to=onnx.TensorProto.FLOAT)


def add_scores(b: GraphBuilder, score_name: str) -> str:
    """Expose the explained score as float32 [N, K] (flattened: some heads keep [N, K, 1, 1])."""
    types = elem_types(b.model)
    flat = b.op("Flatten", [score_name], hint="scores", axis=1)
    return as_float(b, flat, types | {flat: types.get(score_name, onnx.TensorProto.FLOAT)}, out=SCORES)


def set_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)


def forward_graph(proto: onnx.ModelProto, score_name: str,
                  tensors: list[str]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of the model returning the scores [N, K] and the given tensors from one run.

    Returns the graph and a map from each requested tensor name to the output that carries it
    as float32 (the same name unless a Cast was needed).
    """
    model = copy.deepcopy(proto)
    b = GraphBuilder(model)
    add_scores(b, score_name)
    types = elem_types(model)
    carried = {t: as_float(b, t, types) for t in tensors}
    b.append_to(model.graph)
    set_outputs(model, [SCORES] + list(dict.fromkeys(carried.values())))
    prune(model.graph)
    return model, carried


def end_at_scores(model: onnx.ModelProto, score_name: str, replaced_input: str, new_inputs: list) -> None:
    """Finish a batched-scores graph (Score-CAM's masks, Ablation-CAM's ablations): the image
    input `replaced_input`, now computed by prepended nodes, gives way to `new_inputs`
    (ValueInfos), the explained score becomes the only output, unused nodes go."""
    g = model.graph
    rest = [i for i in g.input if i.name != replaced_input]
    del g.input[:]
    g.input.extend(list(new_inputs) + rest)
    tail = GraphBuilder(model)
    add_scores(tail, score_name)
    tail.append_to(g)
    set_outputs(model, [SCORES])
    prune(g)
