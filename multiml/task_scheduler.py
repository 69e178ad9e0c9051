"""Steps (tasks) of a multi-step pipeline, their candidate models (subtasks) and grids.

A *task* is one step of the pipeline; its *subtasks* are alternative implementations of
that step, each with a hyperparameter grid. Tasks form a DAG (``graphlib``); the search
space is every choice of one (subtask, grid point) per task:

>>> ts = TaskScheduler(['step0', 'step1'])           # a chain of two steps
>>> ts.add_subtask('step0', 'mlp', env=object(), hps={'lr': [0.1, 0.01]})
>>> ts.add_subtask('step0', 'bdt', env=object())
>>> ts.add_subtask('step1', 'clf', env=object(), hps={'units': [8, 16]})
>>> len(ts)                                           # (2 + 1) * 2
6
>>> [(s.subtask_id, s.hps) for s in ts[3]]
[('mlp', {'lr': 0.01}), ('clf', {'units': 16})]
>>> ts.index_of([('mlp', {'lr': 0.01}), ('clf', {'units': 16})])
3

Combination ``i`` follows ``itertools.product`` order over the tasks in topological
order (the last task varies fastest) and is computed by mixed-radix arithmetic, so a
space of 10**12 combinations is indexed as fast as one of 10.

Shortcut: ``TaskScheduler([[env0, (env1, {'k': [1, 2]})], env2])`` builds ``step0`` (two
subtasks) → ``step1`` (one subtask).
"""

from __future__ import annotations

import bisect
import graphlib
import heapq
import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from multiml.hyperparameter import Hyperparameters, _checked_index

__all__ = ["TaskScheduler", "subtaskinfo", "subtasktuple"]

logger = logging.getLogger(__name__)


class subtasktuple(NamedTuple):  # noqa: N801 - public name kept from the original API
    """One (subtask, grid point) of one task: what a combination is made of."""

    task_id: str
    subtask_id: str
    env: Any
    hps: dict[str, Any]


class subtaskinfo(NamedTuple):  # noqa: N801 - public name kept from the original API
    """A registered subtask: its id, its env (task object) and its grid."""

    subtask_id: str
    env: Any
    hps: Hyperparameters


@dataclass
class _Task:
    in_dag: bool
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    subtasks: dict[str, subtaskinfo] = field(default_factory=dict)


@dataclass(frozen=True)
class _TaskLayout:
    """Per-task digit of the combination index: subtasks and where their grids start."""

    task_id: str
    subtasks: tuple[subtaskinfo, ...]
    starts: tuple[int, ...]  # starts[j]: first digit value of subtask j
    size: int  # sum of subtask grid sizes: the radix of this task's digit


def grid_size(hps: Hyperparameters) -> int:
    """Grid points of a subtask: a subtask without hyperparameters runs once, with ``{}``."""
    return len(hps) if hps.get_hp_names() else 1


def _grid_point(hps: Hyperparameters, local: int) -> dict[str, Any]:
    return hps[local] if hps.get_hp_names() else {}


def _as_id_list(value: str | Iterable[str] | None, argument: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise TypeError(f"{argument} must be task ids (non-empty str), got {item!r}")
    return list(dict.fromkeys(items))


def _parse_subtask_spec(spec: Any) -> tuple[str | None, Any, Any]:
    """``env`` | ``(env, hps)`` | ``(subtask_id, env, hps)`` | ``{'subtask_id', 'env', 'hps'}``."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"subtask_id", "env", "hps"}
        if "env" not in spec or unknown:
            raise ValueError(
                "a subtask dict needs key 'env' and may have 'subtask_id' and 'hps'; "
                f"got keys {sorted(spec, key=str)}"
            )
        return spec.get("subtask_id"), spec["env"], spec.get("hps")
    if isinstance(spec, tuple):
        if len(spec) == 2:
            return None, spec[0], spec[1]
        if len(spec) == 3:
            return spec[0], spec[1], spec[2]
        raise ValueError(
            f"a subtask tuple is (env, hps) or (subtask_id, env, hps), got {len(spec)} items"
        )
    return None, spec, None


def _topological_order(order: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Topological order of ``order``; among ready tasks the earliest registered comes first.

    So when tasks were registered in a valid order, that order is returned unchanged.
    """
    rank = {task_id: position for position, task_id in enumerate(order)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for task_id in order:
        sorter.add(task_id, *parents[task_id])
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])  # parent -> child, first == last
        raise ValueError(f"task dependencies form a cycle: {cycle}") from None
    ready: list[tuple[int, str]] = []
    result: list[str] = []
    while sorter.is_active():
        for task_id in sorter.get_ready():
            heapq.heappush(ready, (rank[task_id], task_id))
        _, task_id = heapq.heappop(ready)
        result.append(task_id)
        sorter.done(task_id)
    return result


class TaskScheduler:
    """Tasks (steps) in a DAG, each with subtasks ``(subtask_id, env, hps)``.

    Args:
        ordered_tasks: optional shortcut. A list of str is a chain of task ids
            (``['a', 'b']`` → ``a`` → ``b``). Otherwise each element is one step, named
            ``step0``, ``step1``, … and chained in order; a step is a subtask spec or a
            list of them, where a spec is ``env``, ``(env, hps)``,
            ``(subtask_id, env, hps)`` or ``{'subtask_id': ..., 'env': ..., 'hps': ...}``.

    Every method that fails leaves the scheduler unchanged. Hyperparameter grids are
    copied when a subtask is registered, so later changes to the caller's
    ``Hyperparameters`` object do not move the scheduler's combination indices.
    """

    def __init__(self, ordered_tasks: Sequence[Any] | None = None) -> None:
        self._tasks: dict[str, _Task] = {}
        self._layout: tuple[_TaskLayout, ...] | None = None
        if ordered_tasks is None:
            return
        if isinstance(ordered_tasks, (str, Mapping)) or not isinstance(ordered_tasks, Sequence):
            raise TypeError(
                "ordered_tasks must be a list of task ids or a list of per-step subtask "
                f"specs, got {type(ordered_tasks).__name__}"
            )
        steps = list(ordered_tasks)
        if steps and all(isinstance(step, str) for step in steps):
            self.add_ordered_tasks(steps)
        elif any(isinstance(step, str) for step in steps):
            raise TypeError(
                "ordered_tasks mixes task ids (str) with subtask specs; give either a list "
                "of task ids or a list of subtask specs per step"
            )
        else:
            self.add_ordered_subtasks(steps)

    # ------------------------------------------------------------------ building
    def add_task(
        self,
        task_id: str,
        parents: str | Iterable[str] | None = None,
        children: str | Iterable[str] | None = None,
        subtasks: Any = None,
        add_to_dag: bool = True,
    ) -> None:
        """Register ``task_id`` (if new), its dependencies and optionally its subtasks.

        Args:
            task_id: the task (step) id. Registering an existing id again adds the given
                edges and subtasks to it.
            parents: task id(s) that must run before this one (registered if new).
            children: task id(s) that must run after this one (registered if new).
            subtasks: a subtask spec or a list of them (see the class docstring).
            add_to_dag: ``False`` registers a task outside the DAG: it holds subtasks
                (e.g. a connection task built by an agent) but takes part in neither the
                topological order nor the combinations, and cannot have edges.

        Raises:
            ValueError: a cycle, a self-dependency, a duplicate subtask id, edges on a
                task outside the DAG.
        """
        if not isinstance(task_id, str) or not task_id:
            raise TypeError(f"task_id must be a non-empty str, got {task_id!r}")
        parent_ids = _as_id_list(parents, "parents")
        child_ids = _as_id_list(children, "children")
        add_to_dag = bool(add_to_dag)
        existing = self._tasks.get(task_id)
        if existing is not None and existing.in_dag != add_to_dag:
            raise ValueError(
                f"task {task_id!r} is already registered with add_to_dag={existing.in_dag}"
            )
        if not add_to_dag and (parent_ids or child_ids):
            raise ValueError(
                f"task {task_id!r}: parents/children need add_to_dag=True "
                f"(got parents={parent_ids}, children={child_ids})"
            )
        if task_id in parent_ids or task_id in child_ids:
            raise ValueError(f"task {task_id!r} cannot depend on itself")
        for other in parent_ids + child_ids:
            if other in self._tasks and not self._tasks[other].in_dag:
                raise ValueError(
                    f"task {other!r} was registered with add_to_dag=False and cannot be "
                    f"a parent or child of {task_id!r}"
                )

        # Tentative graph: validate the edges (cycles) before changing anything.
        order = list(self._tasks)
        parent_map = {tid: list(task.parents) for tid, task in self._tasks.items()}
        for tid in (task_id, *parent_ids, *child_ids):
            if tid not in parent_map:
                order.append(tid)
                parent_map[tid] = []
        for parent in parent_ids:
            if parent not in parent_map[task_id]:
                parent_map[task_id].append(parent)
        for child in child_ids:
            if task_id not in parent_map[child]:
                parent_map[child].append(task_id)
        if add_to_dag:
            _topological_order([t for t in order if self._in_dag_or_new(t)], parent_map)

        taken = dict(existing.subtasks) if existing is not None else {}
        specs = [] if subtasks is None else subtasks
        if not isinstance(specs, list):
            specs = [specs]
        prepared = []
        for spec in specs:
            subtask_id, env, hps = _parse_subtask_spec(spec)
            info = self._prepare_subtask(task_id, subtask_id, env, hps, taken)
            taken[info.subtask_id] = info
            prepared.append(info)

        # Commit.
        for tid in order:
            if tid not in self._tasks:
                self._tasks[tid] = _Task(in_dag=add_to_dag if tid == task_id else True)
        for parent in parent_ids:
            self._link(parent, task_id)
        for child in child_ids:
            self._link(task_id, child)
        for info in prepared:
            self._commit_subtask(task_id, info)
        self._layout = None

    def add_ordered_tasks(self, ordered_tasks: Sequence[str]) -> None:
        """Register task ids as a chain: each is the child of the previous one."""
        ids = _as_id_list(ordered_tasks, "ordered_tasks")
        if len(ids) != len(ordered_tasks):
            raise ValueError(f"ordered_tasks has duplicate task ids: {list(ordered_tasks)}")
        saved = self._copy_tasks()
        try:
            for previous, task_id in zip([None, *ids], ids, strict=False):
                self.add_task(task_id, parents=previous)
        except Exception:
            self._tasks, self._layout = saved, None
            raise

    def add_ordered_subtasks(self, ordered_subtasks: Sequence[Any]) -> None:
        """Register steps ``step0``, ``step1``, … chained in order, one per element of
        ``ordered_subtasks``: a subtask spec or a list of specs (see the class docstring).
        """
        steps = [step if isinstance(step, list) else [step] for step in ordered_subtasks]
        task_ids = [f"step{position}" for position in range(len(steps))]
        clashes = [task_id for task_id in task_ids if task_id in self._tasks]
        if clashes:
            raise ValueError(f"tasks {clashes} are already registered")
        for task_id, specs in zip(task_ids, steps, strict=True):  # validate everything first
            taken: dict[str, subtaskinfo] = {}
            for spec in specs:
                info = self._prepare_subtask(task_id, *_parse_subtask_spec(spec), taken)
                taken[info.subtask_id] = info
        for previous, task_id, specs in zip([None, *task_ids], task_ids, steps, strict=False):
            self.add_task(task_id, parents=previous, subtasks=specs)

    def add_subtask(
        self,
        task_id: str,
        subtask_id: str | None = None,
        env: Any = None,
        hps: Hyperparameters | Mapping[str, Any] | None = None,
    ) -> None:
        """Register a subtask of ``task_id``.

        Args:
            task_id: a registered task (``KeyError`` listing the tasks otherwise).
            subtask_id: unique within the task; defaults to ``env.name`` when that is a
                non-empty str, else the env's class name.
            env: the task object that implements this subtask (required). Its
                ``task_id``/``subtask_id`` attributes, when it has them, are set.
            hps: a ``Hyperparameters`` or ``{name: values}`` dict (copied); ``None`` means
                no hyperparameters: the subtask runs once with ``{}``.
        """
        task = self._get_task(task_id)
        info = self._prepare_subtask(task_id, subtask_id, env, hps, task.subtasks)
        self._commit_subtask(task_id, info)
        self._layout = None

    # ------------------------------------------------------------------ queries
    def get_task_ids(self) -> list[str]:
        """All registered task ids in registration order (DAG or not)."""
        return list(self._tasks)

    def get_sorted_task_ids(self) -> list[str]:
        """Task ids of the DAG in topological order (ties: registration order)."""
        return [layout.task_id for layout in self._get_layout()]

    def get_subtask_ids(self, task_id: str) -> list[str]:
        """Subtask ids of ``task_id`` in registration order."""
        return list(self._get_task(task_id).subtasks)

    def get_subtask(self, task_id: str, subtask_id: str) -> subtaskinfo:
        """``subtaskinfo(subtask_id, env, hps)``; ``hps`` is a copy of the grid."""
        subtasks = self._get_task(task_id).subtasks
        if subtask_id not in subtasks:
            raise KeyError(
                f"unknown subtask {subtask_id!r} of task {task_id!r}; registered: {list(subtasks)}"
            )
        info = subtasks[subtask_id]
        return info._replace(hps=info.hps.copy())

    def get_parents_task_ids(self, task_id: str) -> list[str]:
        """Direct parents of ``task_id``."""
        return list(self._get_task(task_id).parents)

    def get_children_task_ids(self, task_id: str) -> list[str]:
        """Direct children of ``task_id``."""
        return list(self._get_task(task_id).children)

    def get_subtasks_with_hps(self, task_id: str) -> list[subtasktuple]:
        """Every ``subtasktuple(task_id, subtask_id, env, hps_dict)`` of one task: each
        subtask in order, each of its grid points in grid order."""
        return [
            subtasktuple(task_id, info.subtask_id, info.env, point)
            for info in self._get_task(task_id).subtasks.values()
            for point in (info.hps if info.hps.get_hp_names() else [{}])
        ]

    def get_all_subtasks_with_hps(self) -> list[list[subtasktuple]]:
        """:meth:`get_subtasks_with_hps` of every DAG task, in topological order."""
        return [self.get_subtasks_with_hps(task_id) for task_id in self.get_sorted_task_ids()]

    def show_info(self) -> None:
        """Log the tasks, their dependencies, subtasks and grid sizes (INFO)."""
        lines = [f"TaskScheduler: {len(self._tasks)} task(s), {len(self)} combination(s)"]
        dag_ids = self.get_sorted_task_ids()
        others = [task_id for task_id in self._tasks if task_id not in dag_ids]
        for task_id in dag_ids + others:
            task = self._tasks[task_id]
            where = f"parents={task.parents}" if task.in_dag else "outside the DAG"
            lines.append(f"  task {task_id!r} ({where})")
            for info in task.subtasks.values():
                grid = info.hps.to_dict() or "{}"
                lines.append(
                    f"    subtask {info.subtask_id!r}: {type(info.env).__name__}, "
                    f"{grid_size(info.hps)} point(s), hps={grid}"
                )
        logger.info("\n".join(lines))

    # ------------------------------------------------------------------ combinations
    def __len__(self) -> int:
        """Number of combinations: product over DAG tasks of their summed grid sizes
        (0 when there are no tasks)."""
        layout = self._get_layout()
        return math.prod(task.size for task in layout) if layout else 0

    def __getitem__(self, index: int) -> list[subtasktuple]:
        """The ``index``-th combination (``itertools.product`` order, last task fastest)."""
        layout = self._get_layout()
        remainder = _checked_index(index, len(self), "combination")
        digits = []
        for task in reversed(layout):
            remainder, digit = divmod(remainder, task.size)
            digits.append(digit)
        combination = []
        for task, digit in zip(layout, reversed(digits), strict=True):
            position = bisect.bisect_right(task.starts, digit) - 1
            info = task.subtasks[position]
            point = _grid_point(info.hps, digit - task.starts[position])
            combination.append(subtasktuple(task.task_id, info.subtask_id, info.env, point))
        return combination

    def __iter__(self) -> Iterator[list[subtasktuple]]:
        """Every combination in index order."""
        if not self._get_layout():
            return
        for combination in itertools.product(*self.get_all_subtasks_with_hps()):
            yield list(combination)

    def index_of(self, combination: Sequence[Any]) -> int:
        """Index of ``combination``, the inverse of ``ts[i]`` (e.g. to resume a sweep).

        ``combination`` holds one entry per DAG task in topological order: a
        ``subtasktuple`` (its ``task_id`` must match the position) or a
        ``(subtask_id, hps_dict)`` pair.
        """
        layout = self._get_layout()
        entries = list(combination)
        if len(entries) != len(layout):
            raise ValueError(
                f"a combination has one entry per task {[t.task_id for t in layout]}, "
                f"got {len(entries)} entries"
            )
        index = 0
        for task, entry in zip(layout, entries, strict=True):
            if isinstance(entry, tuple) and len(entry) == 4:
                task_id, subtask_id, _, point = entry
                if task_id != task.task_id:
                    raise ValueError(
                        f"entry for task {task.task_id!r} names task {task_id!r}; entries "
                        f"must follow the topological order {[t.task_id for t in layout]}"
                    )
            elif isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2:
                subtask_id, point = entry
            else:
                raise TypeError(
                    f"entry for task {task.task_id!r} must be a subtasktuple or a "
                    f"(subtask_id, hps_dict) pair, got {entry!r}"
                )
            ids = [info.subtask_id for info in task.subtasks]
            if subtask_id not in ids:
                raise ValueError(
                    f"unknown subtask {subtask_id!r} of task {task.task_id!r}; registered: {ids}"
                )
            position = ids.index(subtask_id)
            hps = task.subtasks[position].hps
            point = {} if point is None else point
            if hps.get_hp_names():
                local = hps.index_of(point)
            elif point:
                raise ValueError(
                    f"subtask {subtask_id!r} of task {task.task_id!r} has no "
                    f"hyperparameters, got {point!r}"
                )
            else:
                local = 0
            index = index * task.size + task.starts[position] + local
        return index

    # ------------------------------------------------------------------ misc
    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __repr__(self) -> str:
        steps = ", ".join(
            f"{task_id}[{', '.join(task.subtasks)}]" for task_id, task in self._tasks.items()
        )
        return f"TaskScheduler({steps})"

    # ------------------------------------------------------------------ internals
    def _copy_tasks(self) -> dict[str, _Task]:
        return {
            task_id: _Task(
                task.in_dag, list(task.parents), list(task.children), dict(task.subtasks)
            )
            for task_id, task in self._tasks.items()
        }

    def _in_dag_or_new(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        return task is None or task.in_dag

    def _get_task(self, task_id: str) -> _Task:
        try:
            return self._tasks[task_id]
        except (KeyError, TypeError):
            raise KeyError(
                f"unknown task {task_id!r}; registered tasks: {list(self._tasks)}"
            ) from None

    def _link(self, parent: str, child: str) -> None:
        if parent not in self._tasks[child].parents:
            self._tasks[child].parents.append(parent)
        if child not in self._tasks[parent].children:
            self._tasks[parent].children.append(child)

    @staticmethod
    def _prepare_subtask(
        task_id: str,
        subtask_id: str | None,
        env: Any,
        hps: Any,
        taken: Mapping[str, subtaskinfo],
    ) -> subtaskinfo:
        """Validate a subtask and build its record without changing anything."""
        if env is None:
            raise ValueError(
                f"task {task_id!r}: a subtask needs an env (the task object), got None"
            )
        if subtask_id is None:
            name = getattr(env, "name", None)
            subtask_id = name if isinstance(name, str) and name else type(env).__name__
        if not isinstance(subtask_id, str) or not subtask_id:
            raise TypeError(f"subtask_id must be a non-empty str, got {subtask_id!r}")
        if subtask_id in taken:
            raise ValueError(
                f"subtask {subtask_id!r} is already registered in task {task_id!r}; "
                f"registered: {list(taken)}"
            )
        if hps is None:
            grid = Hyperparameters()
        elif isinstance(hps, Hyperparameters):
            grid = hps.copy()
        elif isinstance(hps, Mapping):
            grid = Hyperparameters(hps)
        else:
            raise TypeError(
                f"subtask {subtask_id!r} of task {task_id!r}: hps must be a Hyperparameters "
                f"or a {{name: values}} dict, got {type(hps).__name__}"
            )
        return subtaskinfo(subtask_id, env, grid)

    def _commit_subtask(self, task_id: str, info: subtaskinfo) -> None:
        self._tasks[task_id].subtasks[info.subtask_id] = info
        if hasattr(info.env, "task_id"):
            info.env.task_id = task_id
        if hasattr(info.env, "subtask_id"):
            info.env.subtask_id = info.subtask_id

    def _get_layout(self) -> tuple[_TaskLayout, ...]:
        if self._layout is None:
            dag_ids = [task_id for task_id, task in self._tasks.items() if task.in_dag]
            parents = {task_id: self._tasks[task_id].parents for task_id in dag_ids}
            layout = []
            for task_id in _topological_order(dag_ids, parents):
                subtasks = tuple(self._tasks[task_id].subtasks.values())
                sizes = [grid_size(info.hps) for info in subtasks]
                starts = tuple(itertools.accumulate(sizes, initial=0))
                layout.append(_TaskLayout(task_id, subtasks, starts[:-1], starts[-1]))
            self._layout = tuple(layout)
        return self._layout
