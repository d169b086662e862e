"""CMFA network (RGB + event face alignment), its loss, checkpoints, ONNX export and inference.

>>> from facealign_ros.model import CMFA, FaceAligner, lite_config
>>> model = CMFA(lite_config())
"""

from facealign_ros.model.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from facealign_ros.model.cmfa import CMFA, CMFAOutput, default_mean_shape, mean_shape_from
from facealign_ros.model.config import CMFAConfig, lite_config, paper_config, preset
from facealign_ros.model.infer import Alignment, FaceAligner
from facealign_ros.model.loss import LossTerms, cmfa_loss, interocular_indices, normalized_error

__all__ = [
    "CMFA",
    "Alignment",
    "CMFAConfig",
    "CMFAOutput",
    "CheckpointError",
    "CheckpointMeta",
    "FaceAligner",
    "LossTerms",
    "cmfa_loss",
    "default_mean_shape",
    "interocular_indices",
    "lite_config",
    "load_checkpoint",
    "mean_shape_from",
    "normalized_error",
    "paper_config",
    "preset",
    "read_metadata",
    "save_checkpoint",
]
