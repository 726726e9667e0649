"""Faithfulness and localization metrics (DESIGN §7), batched through the same onnxruntime engine.

Average Drop/Increase, Deletion/Insertion, ROAD, the pointing game and the cascading-randomization
sanity check; `onnxcam.evaluate` runs them per method and layer.
"""
from .confidence import average_drop_increase
from .curves import deletion_insertion
from .pointing import pointing_game
from .road import road
from .sanity import cascading_randomization, spearman, ssim

__all__ = ["average_drop_increase", "deletion_insertion", "pointing_game", "cascading_randomization",
           "road", "spearman", "ssim"]
