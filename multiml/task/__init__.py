"""Tasks: the candidate models of each step.

Framework-agnostic classes live here (no torch import); the PyTorch tasks are in
:mod:`multiml.task.pytorch`.
"""

from multiml.task.basic import BaseTask, MLBaseTask, ModelConnectionTask, SklearnPipelineTask

__all__ = ["BaseTask", "MLBaseTask", "ModelConnectionTask", "SklearnPipelineTask"]
