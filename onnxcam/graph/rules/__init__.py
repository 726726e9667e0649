"""Vector-Jacobian product rules, one per ONNX op, gathered into one registry.

A rule is `rule(ctx, node, out_grads, wants) -> in_grads`: given the cotangents of the node's
outputs (None where nothing flows back) and which inputs need one, it emits nodes through `ctx`
and returns a cotangent name (or None) per input. Each family lives in its own module.
"""
from . import attention, elementwise, linear, normalization, pooling, quantization, structural

RULES: dict = {}
for _module in (attention, elementwise, linear, normalization, pooling, quantization, structural):
    RULES.update(_module.RULES)

__all__ = ["RULES"]
