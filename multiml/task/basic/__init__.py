"""Framework-agnostic task classes."""

from multiml.task.basic.base import BaseTask
from multiml.task.basic.ml_base import MLBaseTask
from multiml.task.basic.ml_model_connection import ModelConnectionTask
from multiml.task.basic.sklearn_pipeline import SklearnPipelineTask

__all__ = ["BaseTask", "MLBaseTask", "ModelConnectionTask", "SklearnPipelineTask"]
