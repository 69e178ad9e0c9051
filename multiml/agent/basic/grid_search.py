"""GridSearchAgent: run every combination."""

from __future__ import annotations

from typing import Any

from multiml.agent.basic.random_search import RandomSearchAgent


class GridSearchAgent(RandomSearchAgent):
    """Run every combination of the task scheduler; ``job_id`` is the combination index.

    >>> agent = GridSearchAgent(storegate=sg, task_scheduler=steps, metric='acc',
    ...                         num_workers=[0, 1])  # doctest: +SKIP
    >>> agent.execute(); agent.finalize()  # doctest: +SKIP

    Args:
        **kwargs: :class:`RandomSearchAgent` arguments except ``samplings``.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("samplings") is not None:
            raise ValueError(
                "GridSearchAgent runs every combination; samplings does not apply (use "
                "RandomSearchAgent to run a subset)"
            )
        super().__init__(**kwargs)

    def execute(self) -> None:
        """Run every combination, in index order."""
        total = len(self._task_scheduler)
        self.execute_jobs_for([(index, index) for index in range(total)])
