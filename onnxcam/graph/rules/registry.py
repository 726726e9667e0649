"""`registry()` gives each rule module its table and the decorator that fills it."""
from __future__ import annotations


def registry():
    table: dict = {}

    def rule(*ops):
        def register(fn):
            for op in ops:
                table[op] = fn
            return fn
        return register
    return table, rule
