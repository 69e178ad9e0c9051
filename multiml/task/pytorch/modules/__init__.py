"""Model building blocks, looked up by name by :class:`~multiml.task.pytorch.PytorchBaseTask`.

``model='MLPBlock'`` in a task (or a Hydra config) resolves to :class:`MLPBlock` here.
"""

from multiml.task.pytorch.modules.connection_model import ConnectionModel
from multiml.task.pytorch.modules.conv2d import Conv2DBlock
from multiml.task.pytorch.modules.lstm import LSTMBlock
from multiml.task.pytorch.modules.mlp import MLPBlock

__all__ = ["ConnectionModel", "Conv2DBlock", "LSTMBlock", "MLPBlock"]
