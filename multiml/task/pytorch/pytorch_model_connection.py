"""ModelConnectionTask for PyTorch subtasks: one ConnectionModel trained end to end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from multiml.task.basic.ml_model_connection import ModelConnectionTask as _Wiring
from multiml.task.pytorch.modules.connection_model import ConnectionModel
from multiml.task.pytorch.pytorch_base import PytorchBaseTask


class ModelConnectionTask(_Wiring, PytorchBaseTask):
    """Connect trained :class:`PytorchBaseTask` subtasks into one model and train it.

    The connection reuses each subtask's *current* model object (its weights after
    pre-training; a subtask never compiled gets a fresh model) and each subtask's loss. The
    optimizer covers only parameters with ``requires_grad`` — freeze a pre-trained subtask
    with :meth:`freeze_subtask` (or the agents' ``freeze_model_weights``) and its weights
    stay exactly as they were.

    >>> task = ModelConnectionTask(subtasks=[step0, step1], optimizer='Adam',
    ...                            optimizer_args={'lr': 1e-3}, loss_weights='flat_loss',
    ...                            num_epochs=5)  # doctest: +SKIP
    >>> task.execute()  # doctest: +SKIP
    """

    def __init__(
        self,
        subtasks: Sequence[PytorchBaseTask],
        loss_weights: str | list[float] | dict[str, float] | None = None,
        variable_mapping: Sequence[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("metrics", ["loss", "subloss"])
        super().__init__(
            subtasks=subtasks,
            loss_weights=loss_weights,
            variable_mapping=variable_mapping,
            **kwargs,
        )
        for subtask in self._subtasks:
            if not isinstance(subtask, PytorchBaseTask):
                raise TypeError(
                    f"ModelConnectionTask (PyTorch) connects PytorchBaseTask subtasks; "
                    f"{subtask.name} is a {type(subtask).__name__}"
                )

    @staticmethod
    def freeze_subtask(subtask: PytorchBaseTask) -> None:
        """Stop training a subtask's model inside the connection (its weights stay fixed).

        Raises:
            ValueError: the subtask has no model yet (compile or train it first).
        """
        if subtask.ml.model is None:
            raise ValueError(
                f"cannot freeze {subtask.name!r} (step {subtask.task_id!r}): it has no model "
                "yet; compile or train it first"
            )
        for param in subtask.unwrapped_model.parameters():
            param.requires_grad_(False)

    def compile_model(self) -> None:
        """Wrap the subtasks' current models in a :class:`ConnectionModel` on this device."""
        models = []
        for subtask in self._subtasks:
            if subtask.ml.model is None:
                # Only its model: a subtask's inputs may be produced inside the connection,
                # so its own variable checks do not apply (compile_var_names checks ours).
                subtask.compile_model()
            models.append(subtask.unwrapped_model)
        model = ConnectionModel(models, self._input_var_index, self._num_outputs)
        self.ml.model = self.wrap_model(model)

    def compile_optimizer(self) -> None:
        """Build the optimizer over trainable parameters (a clear error when all are frozen)."""
        if self._optimizer is not None and not any(
            p.requires_grad for p in self.ml.model.parameters()
        ):
            raise ValueError(
                "ModelConnectionTask: every subtask's weights are frozen, so there is nothing "
                "to train; unfreeze at least one subtask"
            )
        super().compile_optimizer()

    def compile_loss(self) -> None:
        """Per-subtask losses come from the subtasks; this resolves the weights."""
        weights = self.resolve_loss_weights()
        for subtask, weight in zip(self._subtasks, weights, strict=True):
            if subtask.ml.loss is None:
                subtask.compile_loss()
            if weight and subtask.ml.loss is None:
                raise ValueError(
                    f"ModelConnectionTask: subtask {subtask.name!r} (step {subtask.task_id!r}) "
                    f"has loss weight {weight} but no loss; set its loss or give it weight 0"
                )
        self.ml.loss = [subtask.ml.loss for subtask in self._subtasks]
        self.ml.loss_weights = weights

    def step_loss(self, outputs: Any, targets: Any) -> tuple[Any, list[Any]]:
        """Weighted sum of each subtask's own loss on its outputs."""
        total = None
        sublosses: list[Any] = []
        for subtask, weight, output, target in zip(
            self._subtasks, self.ml.loss_weights, outputs, targets, strict=True
        ):
            if not weight:
                sublosses.append(None)
                continue
            term = subtask.step_loss(output, target)[0] * weight
            sublosses.append(term)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("ModelConnectionTask: every loss weight is zero; nothing to train")
        return total, sublosses

    def postprocess(self, outputs: Any) -> Any:
        """Each subtask post-processes its own outputs (e.g. softmax for classifiers)."""
        return [sub.postprocess(out) for sub, out in zip(self._subtasks, outputs, strict=True)]
