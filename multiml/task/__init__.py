"""Tasks: the candidate models of each step."""

from multiml.task.basic import BaseTask, MLBaseTask

__all__ = ["BaseTask", "MLBaseTask"]
