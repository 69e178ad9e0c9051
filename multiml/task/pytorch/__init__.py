"""PyTorch tasks.

Importing this package imports torch.
"""

from multiml.task.pytorch.pytorch_base import PytorchBaseTask
from multiml.task.pytorch.pytorch_classification import PytorchClassificationTask
from multiml.task.pytorch.pytorch_model_connection import ModelConnectionTask

__all__ = ["ModelConnectionTask", "PytorchBaseTask", "PytorchClassificationTask"]
