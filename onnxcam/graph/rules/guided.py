"""Guided backpropagation (Springenberg et al., 2015): ReLU-like ops pass back only positive
cotangents, and only where the unit was active. Everything else is the plain rule set."""
from __future__ import annotations

from . import RULES
from .elementwise import clip, relu


def _guided(plain):
    def rule(ctx, node, g, wants):
        positive = ctx.op("Relu", [g[0]], hint="guided")
        return plain(ctx, node, [positive], wants)
    return rule


GUIDED_RULES = {**RULES, "Relu": _guided(relu), "Clip": _guided(clip)}
