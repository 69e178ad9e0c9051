"""ConnectionRandomSearchAgent: per combination, pre-train, connect, re-train end to end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from multiml.agent.basic.random_search import RandomSearchAgent
from multiml.agent.runner import ConnectionSpec, connection_task_name, frozen_step


class ConnectionRandomSearchAgent(RandomSearchAgent):
    """Random search where every combination is trained as one connected model.

    For each sampled combination: each step's subtask is pre-trained on its own (or, with
    ``do_pretraining=False``, only compiled and used to predict), optionally frozen, then
    all steps are connected into a PyTorch ``ModelConnectionTask`` (built with
    ``connectiontask_args``), trained end to end, and the metric measured on its outputs.

    >>> agent = ConnectionRandomSearchAgent(storegate=sg, task_scheduler=steps,
    ...     metric='acc', samplings=4, freeze_model_weights=False,
    ...     connectiontask_args={'optimizer': 'Adam', 'num_epochs': 5,
    ...                          'loss_weights': 'flat_loss'})  # doctest: +SKIP

    Args:
        freeze_model_weights: keep pre-trained weights fixed while training the connection:
            ``True`` fixes every step (then nothing is left to train and the connected
            model is only evaluated), a list of task ids (e.g. ``['step0']``) fixes those
            steps and trains the others end to end.
        do_pretraining: pre-train each subtask before connecting.
        connectiontask_name: name of the connection task (``_<job_id>`` is appended).
        connectiontask_args: keyword arguments of ``ModelConnectionTask``.
        **kwargs: :class:`RandomSearchAgent` arguments.
    """

    def __init__(
        self,
        freeze_model_weights: bool | Sequence[str] = False,
        do_pretraining: bool = True,
        connectiontask_name: str | None = None,
        connectiontask_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(freeze_model_weights, bool):
            if isinstance(freeze_model_weights, str) or not isinstance(
                freeze_model_weights, Sequence
            ):
                raise ValueError(
                    f"freeze_model_weights={freeze_model_weights!r}: expected True, False or "
                    "a list of task ids"
                )
            freeze_model_weights = list(freeze_model_weights)
            frozen_step(freeze_model_weights, "", self._task_scheduler.get_task_ids())
        self._freeze_model_weights = freeze_model_weights
        self._do_pretraining = do_pretraining
        self._connectiontask_name = connectiontask_name
        self._connectiontask_args = dict(connectiontask_args or {})
        self._reuse_pretraining = False

    def connection_spec(self) -> ConnectionSpec:
        """Every combination is connected."""
        return ConnectionSpec(
            pretrain=self._do_pretraining,
            freeze=self._freeze_model_weights,
            task_args=self._connectiontask_args,
            name=self._connectiontask_name,
            reuse_pretraining=self._reuse_pretraining,
        )

    def execute(self) -> None:
        """Run the sampled combinations, each connected end to end."""
        super().execute()

    def connectiontask_name_with_jobid(self, job_id: int) -> str:
        """Name of the connection task of combination ``job_id`` (``<name>_<job_id>``)."""
        return connection_task_name(self._connectiontask_name, job_id)
