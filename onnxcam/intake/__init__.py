"""Intake: load .onnx files safely and bring them to one canonical, batchable form."""
from .catalog import LayerInfo
from .model import Model, load

__all__ = ["LayerInfo", "Model", "load"]
