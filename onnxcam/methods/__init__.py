"""Explanation methods, one small module per family, all registered by name in `REGISTRY`."""
from . import (ablationcam, attribution, cam, deeplift, eigencam, fullgrad, gradcam, guided,  # noqa: F401 (registration)
               groupcam, perturbation, relevance, scorecam, scorecam_smoothed)
from .base import REGISTRY, Method, Request, get

__all__ = ["REGISTRY", "Method", "Request", "get"]
