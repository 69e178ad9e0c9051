"""Tasks: the candidate models of each step."""

from multiml.task.basic import BaseTask, MLBaseTask, SklearnPipelineTask

__all__ = ["BaseTask", "MLBaseTask", "SklearnPipelineTask"]
