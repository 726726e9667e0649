"""Targets: what score of a model's outputs is explained (classifier logit, segmentation region,
sigmoid class, any output element, embedding similarity, a detector's candidates). See
targets/base.py for the design."""
from .base import TARGET_SCORE, Target, apply_target
from .classify import Classify
from .detect import Detect, DetectHead, find_detections
from .embed import Embed
from .multilabel import MultiLabel
from .output import Output
from .segment import Segment

__all__ = ["Target", "Classify", "Segment", "MultiLabel", "Output", "Embed", "Detect", "DetectHead",
           "find_detections", "apply_target", "TARGET_SCORE"]
