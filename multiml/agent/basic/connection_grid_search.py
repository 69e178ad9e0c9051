"""ConnectionGridSearchAgent: every combination pre-trained, connected and re-trained."""

from __future__ import annotations

from typing import Any

from multiml.agent.basic.connection_random_search import ConnectionRandomSearchAgent
from multiml.agent.basic.grid_search import GridSearchAgent


class ConnectionGridSearchAgent(GridSearchAgent, ConnectionRandomSearchAgent):
    """Grid search where every combination is trained as one connected model.

    >>> agent = ConnectionGridSearchAgent(storegate=sg, task_scheduler=steps, metric='acc',
    ...     reuse_pretraining=True, connectiontask_args={'optimizer': 'Adam'})  # doctest: +SKIP
    >>> agent.execute(); agent.finalize(); agent.get_best_result()  # doctest: +SKIP

    Args:
        reuse_pretraining: pre-train each (subtask, hyperparameters) once and reuse its
            weights in every combination that contains it, even under a different upstream
            step (faster; the pre-training then saw the upstream of the first combination
            that needed it). Without it, a pre-trained step is still reused when its whole
            upstream prefix is identical — that reuse is exact.
        **kwargs: :class:`ConnectionRandomSearchAgent` arguments (except ``samplings``).
    """

    def __init__(self, reuse_pretraining: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reuse_pretraining = reuse_pretraining

    def execute(self) -> None:
        """Run every combination, each connected end to end."""
        GridSearchAgent.execute(self)

    def finalize(self) -> None:
        """Log the result table; store ``saver['result']`` (and ``saver['history']``)."""
        super().finalize()

    def get_best_result(self) -> dict[str, Any]:
        """The best result dict (by the metric type)."""
        if self._result is None:
            raise RuntimeError("ConnectionGridSearchAgent.get_best_result(): call execute() first")
        return self._result
