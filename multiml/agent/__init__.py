"""Agents search the combinations of a multi-step task; metrics score them."""

from multiml.agent.basic import (
    BaseAgent,
    ConnectionGridSearchAgent,
    ConnectionRandomSearchAgent,
    GridSearchAgent,
    RandomSearchAgent,
    SequentialAgent,
)

__all__ = [
    "BaseAgent",
    "ConnectionGridSearchAgent",
    "ConnectionRandomSearchAgent",
    "GridSearchAgent",
    "RandomSearchAgent",
    "SequentialAgent",
]
