"""Faithfulness and localization metrics (DESIGN §7), batched through the same onnxruntime engine.

Average Drop/Increase, Deletion/Insertion, ROAD, the pointing game, the cascading-randomization
sanity check, and the agreement of two maps (model comparison); `onnxcam.evaluate` runs them per method and layer.
"""
from .agreement import map_agreement, pearson, spearman, topk_iou
from .confidence import average_drop_increase
from .curves import deletion_insertion
from .pointing import pointing_game
from .road import road
from .sanity import cascading_randomization, ssim

__all__ = ["average_drop_increase", "deletion_insertion", "pointing_game", "cascading_randomization",
           "road", "spearman", "ssim", "pearson", "topk_iou", "map_agreement"]
