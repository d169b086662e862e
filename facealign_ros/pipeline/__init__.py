"""ROS-free core: messages in, :class:`FaceResult` out; used unchanged by the node and replay.

>>> from facealign_ros.pipeline import Pipeline, PipelineConfig
>>> pipe = Pipeline.from_config(PipelineConfig(mode="events"))  # doctest: +SKIP
>>> pipe.on_events(packet); result = pipe.step()  # doctest: +SKIP
"""

from facealign_ros.pipeline.config import (
    MODES,
    PARAMETER_RANGES,
    PipelineConfig,
    default_model_path,
)
from facealign_ros.pipeline.core import Pipeline
from facealign_ros.pipeline.health import DROP_REASONS, PipelineStats, ThrottledLog
from facealign_ros.pipeline.inputs import EventStream, InputError
from facealign_ros.pipeline.model import ModelLoadError, ModelRunner, load_model
from facealign_ros.pipeline.result import DebugFrame, FaceResult
from facealign_ros.pipeline.worker import LatestOnlyWorker

__all__ = [
    "DROP_REASONS",
    "MODES",
    "PARAMETER_RANGES",
    "DebugFrame",
    "EventStream",
    "FaceResult",
    "InputError",
    "LatestOnlyWorker",
    "ModelLoadError",
    "ModelRunner",
    "Pipeline",
    "PipelineConfig",
    "PipelineStats",
    "ThrottledLog",
    "default_model_path",
    "load_model",
]
