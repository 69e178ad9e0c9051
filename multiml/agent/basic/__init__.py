"""The agents: strategies that choose which combinations to run."""

from multiml.agent.basic.base import Agent, BaseAgent
from multiml.agent.basic.connection_grid_search import ConnectionGridSearchAgent
from multiml.agent.basic.connection_random_search import ConnectionRandomSearchAgent
from multiml.agent.basic.grid_search import GridSearchAgent
from multiml.agent.basic.random_search import RandomSearchAgent
from multiml.agent.basic.sequential import SequentialAgent

__all__ = [
    "Agent",
    "BaseAgent",
    "ConnectionGridSearchAgent",
    "ConnectionRandomSearchAgent",
    "GridSearchAgent",
    "RandomSearchAgent",
    "SequentialAgent",
]
