"""Method options (steps, samples, seed, ...): one reader and the range checks they share, so
every method refuses a bad value with the same one-line error naming the option and its range."""
from __future__ import annotations

import numpy as np

from ..errors import OnnxCamError, describe


#: The CLI flag of each option whose flag is not --NAME (errors name both).
FLAGS = {"steps": "--path-steps", "rule": "--path-rule", "baseline": "--path-baseline",
         "window": "--occlusion-window", "stride": "--occlusion-stride", "top_k": "--top-k"}


def option(req, name: str, default, check):
    """req.options[name] (default when absent), refused unless check(value); check's docstring
    says what is allowed."""
    value = req.options.get(name, default)
    if not check(value):
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        raise OnnxCamError(f"option {name} ({flag}) got {describe(value)}; {check.__doc__}")
    return value


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)


def _integer(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def count(v) -> bool:
    """give a whole number in 1..100000"""
    return _integer(v) and 1 <= v <= 100_000


def seed(v) -> bool:
    """give a whole number >= 0"""
    return _integer(v) and v >= 0


def noise_level(v) -> bool:
    """give a number in [0, 10] (noise stdev as a fraction of each image's value range)"""
    return _number(v) and 0 <= v <= 10


def probability(v) -> bool:
    """give a number strictly between 0 and 1"""
    return _number(v) and 0 < v < 1


def choice(options):
    def check(v) -> bool:
        return isinstance(v, str) and v in options
    check.__doc__ = f"give one of {', '.join(options)}"
    return check


def pixels(limit: int):
    def check(v) -> bool:
        return _integer(v) and 1 <= v <= limit
    check.__doc__ = f"give a whole number of pixels in 1..{limit} (the input's shorter side)"
    return check
