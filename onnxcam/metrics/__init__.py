"""Faithfulness and localization metrics (DESIGN §7), batched through the same onnxruntime engine.

Issue 5 in progress: Average Drop/Increase, Deletion/Insertion, the pointing game and the
cascading-randomization sanity check are here; ROAD, `onnxcam evaluate` and its report are not yet.
"""
from .confidence import average_drop_increase
from .curves import deletion_insertion
from .pointing import pointing_game
from .sanity import cascading_randomization, spearman, ssim

__all__ = ["average_drop_increase", "deletion_insertion", "pointing_game", "cascading_randomization",
           "spearman", "ssim"]
