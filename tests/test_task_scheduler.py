"""Tests of multiml.task_scheduler: DAG order, subtasks, shortcuts, combination indexing."""

from __future__ import annotations

import itertools
import logging
import pickle
import time

import pytest

from multiml import TaskScheduler as TopLevelTaskScheduler
from multiml.hyperparameter import Hyperparameters
from multiml.task_scheduler import TaskScheduler, subtaskinfo, subtasktuple


class Env:
    """A stand-in task object with the id attributes a BaseTask has."""

    def __init__(self, name=None):
        self.name = name
        self.task_id = None
        self.subtask_id = None


class PlainEnv:
    """An env without name/task_id attributes."""


def ids(combination):
    return [(s.task_id, s.subtask_id, s.hps) for s in combination]


def test_top_level_export():
    assert TopLevelTaskScheduler is TaskScheduler


def test_add_task_and_subtask_basics():
    ts = TaskScheduler()
    ts.add_task("step0")
    ts.add_task("step1", parents="step0")
    env_a, env_b = Env("a"), Env()
    ts.add_subtask("step0", env=env_a, hps={"lr": [0.1, 0.2]})
    ts.add_subtask("step1", "b", env_b)
    assert ts.get_sorted_task_ids() == ["step0", "step1"]
    assert ts.get_subtask_ids("step0") == ["a"]
    assert (env_a.task_id, env_a.subtask_id) == ("step0", "a")
    assert (env_b.task_id, env_b.subtask_id) == ("step1", "b")
    info = ts.get_subtask("step0", "a")
    assert isinstance(info, subtaskinfo)
    assert info.subtask_id == "a"
    assert info.env is env_a
    assert isinstance(info.hps, Hyperparameters)
    assert info.hps.to_dict() == {"lr": [0.1, 0.2]}
    assert ts.get_parents_task_ids("step1") == ["step0"]
    assert ts.get_children_task_ids("step0") == ["step1"]
    assert ts.get_parents_task_ids("step0") == []
    assert "step0" in ts
    assert "nope" not in ts


def test_default_subtask_id_is_env_name_else_class_name():
    ts = TaskScheduler(["t"])
    ts.add_subtask("t", env=Env("named"))
    ts.add_subtask("t", env=Env())  # name None → class name
    ts.add_subtask("t", env=PlainEnv())
    assert ts.get_subtask_ids("t") == ["named", "Env", "PlainEnv"]


def test_subtask_errors():
    ts = TaskScheduler(["t"])
    ts.add_subtask("t", "s", Env())
    with pytest.raises(ValueError, match=r"'s' is already registered in task 't'"):
        ts.add_subtask("t", "s", Env())
    with pytest.raises(KeyError, match=r"unknown task 'u'.*\['t'\]"):
        ts.add_subtask("u", "s", Env())
    with pytest.raises(ValueError, match="needs an env"):
        ts.add_subtask("t", "x")
    with pytest.raises(TypeError, match="hps must be"):
        ts.add_subtask("t", "x", Env(), hps=[1, 2])
    with pytest.raises(KeyError, match=r"unknown subtask 'zz' of task 't'.*\['s'\]"):
        ts.get_subtask("t", "zz")
    with pytest.raises(KeyError, match="unknown task"):
        ts.get_subtask_ids("nope")
    assert ts.get_subtask_ids("t") == ["s"]


def test_diamond_dag_is_topologically_sorted():
    ts = TaskScheduler()
    ts.add_task("merge", parents=["left", "right"])
    ts.add_task("source", children=["left", "right"])
    ts.add_task("sink", parents="merge")
    order = ts.get_sorted_task_ids()
    assert order[0] == "source"
    assert order[-2:] == ["merge", "sink"]
    assert set(order[1:3]) == {"left", "right"}
    # ties are broken by registration order: left was registered before right
    assert order == ["source", "left", "right", "merge", "sink"]
    assert ts.get_parents_task_ids("merge") == ["left", "right"]
    assert ts.get_children_task_ids("source") == ["left", "right"]


def test_ties_follow_registration_order_when_it_is_valid():
    ts = TaskScheduler()
    ts.add_task("a")
    ts.add_task("c", parents="a")
    ts.add_task("b")
    assert ts.get_sorted_task_ids() == ["a", "c", "b"]
    ts = TaskScheduler()
    for name in ["z", "y", "x"]:
        ts.add_task(name)
    assert ts.get_sorted_task_ids() == ["z", "y", "x"]


def test_cycle_is_rejected_and_changes_nothing():
    ts = TaskScheduler(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"cycle: .*c -> a"):
        ts.add_task("a", parents="c")
    assert ts.get_sorted_task_ids() == ["a", "b", "c"]
    assert ts.get_parents_task_ids("a") == []
    assert ts.get_children_task_ids("c") == []
    with pytest.raises(ValueError, match="itself"):
        ts.add_task("a", children="a")
    # a cycle through new tasks also registers none of them
    with pytest.raises(ValueError, match="cycle"):
        ts.add_task("c", children=["new"], parents=["new"])
    assert ts.get_task_ids() == ["a", "b", "c"]


def test_failed_add_task_registers_nothing():
    ts = TaskScheduler(["a"])
    env = Env()
    with pytest.raises(ValueError, match="already registered"):
        ts.add_task("b", parents="a", subtasks=[("s", env, None), ("s", Env(), None)])
    assert ts.get_task_ids() == ["a"]
    assert ts.get_children_task_ids("a") == []
    assert env.task_id is None


def test_task_outside_dag():
    ts = TaskScheduler(["a", "b"])
    ts.add_subtask("a", "s0", Env())
    ts.add_subtask("b", "s1", Env())
    ts.add_task("connection", add_to_dag=False, subtasks={"subtask_id": "c", "env": Env()})
    assert ts.get_sorted_task_ids() == ["a", "b"]
    assert ts.get_task_ids() == ["a", "b", "connection"]
    assert ts.get_subtask_ids("connection") == ["c"]
    assert len(ts) == 1
    assert [s.task_id for s in ts[0]] == ["a", "b"]
    with pytest.raises(ValueError, match="add_to_dag=True"):
        ts.add_task("x", parents="a", add_to_dag=False)
    with pytest.raises(ValueError, match="add_to_dag=False"):
        ts.add_task("b", children="connection")
    with pytest.raises(ValueError, match="already registered with add_to_dag=False"):
        ts.add_task("connection")
    assert ts.get_task_ids() == ["a", "b", "connection"]


def test_list_of_strings_is_a_chain():
    ts = TaskScheduler(["first", "second", "third"])
    assert ts.get_sorted_task_ids() == ["first", "second", "third"]
    assert ts.get_parents_task_ids("third") == ["second"]
    with pytest.raises(ValueError, match="duplicate"):
        TaskScheduler(["a", "b", "a"])
    with pytest.raises(TypeError, match="mixes"):
        TaskScheduler(["a", Env()])
    with pytest.raises(TypeError, match="list of task ids"):
        TaskScheduler("abc")


def test_list_of_subtask_specs_builds_steps():
    e0, e1, e2, e3 = Env("m0"), Env("m1"), Env(), PlainEnv()
    ts = TaskScheduler(
        [
            [e0, (e1, {"k": [1, 2]})],  # step0: two subtasks
            ("custom", e2, Hyperparameters({"u": [5]})),  # step1: one (id, env, hps)
            e3,  # step2: a bare env
            [{"subtask_id": "d", "env": Env(), "hps": {"z": [0, 1, 2]}}],
        ]
    )
    assert ts.get_sorted_task_ids() == ["step0", "step1", "step2", "step3"]
    assert ts.get_parents_task_ids("step2") == ["step1"]
    assert ts.get_subtask_ids("step0") == ["m0", "m1"]
    assert ts.get_subtask_ids("step1") == ["custom"]
    assert ts.get_subtask_ids("step2") == ["PlainEnv"]
    assert ts.get_subtask_ids("step3") == ["d"]
    assert (e1.task_id, e1.subtask_id) == ("step0", "m1")
    assert (e2.task_id, e2.subtask_id) == ("step1", "custom")
    assert len(ts) == (1 + 2) * 1 * 1 * 3


def test_bad_subtask_spec_in_shortcut_registers_nothing():
    e0 = Env("ok")
    with pytest.raises(ValueError, match="subtask tuple"):
        TaskScheduler([e0, (1, 2, 3, 4)])
    ts = TaskScheduler(["x"])
    with pytest.raises(ValueError, match="already registered"):
        ts.add_ordered_subtasks([e0, [Env("dup"), Env("dup")]])
    assert ts.get_task_ids() == ["x"]
    assert e0.task_id is None
    ts2 = TaskScheduler()
    ts2.add_task("step0")
    with pytest.raises(ValueError, match=r"\['step0'\] are already registered"):
        ts2.add_ordered_subtasks([Env()])


def test_subtasks_with_hps():
    env_a, env_b = Env("a"), Env("b")
    ts = TaskScheduler([[(env_a, {"x": [1, 2], "y": ["p", "q"]}), env_b]])
    listed = ts.get_subtasks_with_hps("step0")
    assert all(isinstance(s, subtasktuple) for s in listed)
    assert [(s.subtask_id, s.hps) for s in listed] == [
        ("a", {"x": 1, "y": "p"}),
        ("a", {"x": 1, "y": "q"}),
        ("a", {"x": 2, "y": "p"}),
        ("a", {"x": 2, "y": "q"}),
        ("b", {}),
    ]
    assert listed[0].env is env_a
    assert listed[0].task_id == "step0"
    assert ts.get_all_subtasks_with_hps() == [listed]


def small_scheduler():
    ts = TaskScheduler()
    ts.add_task("pre")
    ts.add_task("fit", parents="pre")
    ts.add_task("post", parents="fit")
    ts.add_subtask("pre", "p0", Env(), {"a": [1, 2]})
    ts.add_subtask("pre", "p1", Env())
    ts.add_subtask("fit", "f0", Env(), {"lr": [0.1, 0.01, 0.001], "bs": [8, 16]})
    ts.add_subtask("fit", "f1", Env(), {"k": [3]})
    ts.add_subtask("post", "q0", Env(), {"t": [0.5, 0.7]})
    ts.add_subtask("post", "q1", Env(), {"t": [0.1]})
    return ts


def test_combinations_equal_itertools_product():
    ts = small_scheduler()
    expected = [list(c) for c in itertools.product(*ts.get_all_subtasks_with_hps())]
    assert len(ts) == (2 + 1) * (6 + 1) * (2 + 1) == len(expected) == 63
    assert [ts[i] for i in range(len(ts))] == expected
    assert list(ts) == expected
    assert ts[-1] == expected[-1]
    assert ts[-63] == expected[0]
    assert all(isinstance(s, subtasktuple) for s in ts[5])
    assert [s.task_id for s in ts[5]] == ["pre", "fit", "post"]
    # last task fastest
    assert ids(ts[0])[2] == ("post", "q0", {"t": 0.5})
    assert ids(ts[1])[2] == ("post", "q0", {"t": 0.7})
    assert ids(ts[2])[2] == ("post", "q1", {"t": 0.1})
    assert ids(ts[3])[1] == ("fit", "f0", {"lr": 0.1, "bs": 16})


def test_combinations_on_a_diamond_follow_topological_order():
    ts = TaskScheduler()
    ts.add_task("d", parents=["b", "c"])
    ts.add_task("a", children=["b", "c"])
    for task_id, n in [("a", 2), ("b", 3), ("c", 1), ("d", 2)]:
        ts.add_subtask(task_id, "s", Env(), {"v": list(range(n))})
    order = ts.get_sorted_task_ids()
    assert order == ["a", "b", "c", "d"]  # registered d, b, c, a: sorted, ties by registration
    expected = [list(c) for c in itertools.product(*ts.get_all_subtasks_with_hps())]
    assert len(ts) == 12
    assert [ts[i] for i in range(12)] == expected
    assert [s.task_id for s in ts[7]] == order


def test_combination_index_errors():
    ts = small_scheduler()
    with pytest.raises(IndexError, match="size 63"):
        ts[63]
    with pytest.raises(IndexError, match="size 63"):
        ts[-64]
    with pytest.raises(TypeError):
        ts["0"]
    empty = TaskScheduler()
    assert len(empty) == 0
    assert list(empty) == []
    with pytest.raises(IndexError, match="size 0"):
        empty[0]
    no_subtasks = TaskScheduler(["a", "b"])
    no_subtasks.add_subtask("a", "s", Env())
    assert len(no_subtasks) == 0
    assert list(no_subtasks) == []


def test_index_of_inverts_indexing():
    ts = small_scheduler()
    for i in range(len(ts)):
        assert ts.index_of(ts[i]) == i
        assert ts.index_of([(s.subtask_id, s.hps) for s in ts[i]]) == i
    assert ts.index_of([("p1", None), ("f1", {"k": 3}), ("q1", {"t": 0.1})]) == 62


def test_index_of_errors():
    ts = small_scheduler()
    good = ts[10]
    with pytest.raises(ValueError, match="one entry per task"):
        ts.index_of(good[:2])
    with pytest.raises(ValueError, match="entries must follow the topological order"):
        ts.index_of([good[1], good[0], good[2]])
    with pytest.raises(ValueError, match=r"unknown subtask 'zz' of task 'fit'"):
        ts.index_of([("p0", {"a": 1}), ("zz", {}), ("q0", {"t": 0.5})])
    with pytest.raises(ValueError, match="is not a value of hyperparameter 'lr'"):
        ts.index_of([("p0", {"a": 1}), ("f0", {"lr": 5, "bs": 8}), ("q0", {"t": 0.5})])
    with pytest.raises(ValueError, match="has no hyperparameters"):
        ts.index_of([("p1", {"a": 1}), ("f1", {"k": 3}), ("q1", {"t": 0.1})])
    with pytest.raises(TypeError, match="subtasktuple or a"):
        ts.index_of(["p0", "f1", "q1"])


def test_billion_combinations_are_indexed_instantly():
    ts = TaskScheduler()
    for step in range(9):
        ts.add_task(f"s{step}", parents=f"s{step - 1}" if step else None)
        ts.add_subtask(f"s{step}", "m0", Env(), {"x": list(range(4))})
        ts.add_subtask(f"s{step}", "m1", Env(), {"y": list(range(3)), "z": [0, 1]})
    start = time.perf_counter()
    assert len(ts) == 10**9
    index = 987_654_321
    combination = ts[index]
    # digit of step k (base 10) selects: 0-3 → m0 x=digit, 4-9 → m1 (y, z) in grid order
    for step, digit in enumerate(int(d) for d in f"{index:09d}"):
        entry = combination[step]
        assert entry.task_id == f"s{step}"
        if digit < 4:
            assert (entry.subtask_id, entry.hps) == ("m0", {"x": digit})
        else:
            y, z = divmod(digit - 4, 2)
            assert (entry.subtask_id, entry.hps) == ("m1", {"y": y, "z": z})
    assert ts.index_of(combination) == index
    assert ts[-1] == ts[10**9 - 1]
    for i in range(0, 10**9, 10**9 // 997):
        ts[i]
    assert time.perf_counter() - start < 1.0


def test_hps_are_snapshotted_at_registration():
    hps = Hyperparameters({"a": [1, 2]})
    ts = TaskScheduler(["t"])
    ts.add_subtask("t", "s", Env(), hps)
    assert len(ts) == 2
    hps.add_hp("b", [1, 2, 3])  # changing the caller's grid does not move indices
    assert len(ts) == 2
    ts.get_subtask("t", "s").hps.add_hp("c", [1, 2])
    assert len(ts) == 2
    ts.add_subtask("t", "s2", Env(), {"z": [0, 1, 2]})  # the scheduler's own changes do
    assert len(ts) == 5
    assert ids(ts[4]) == [("t", "s2", {"z": 2})]


def test_combination_dicts_are_fresh():
    ts = small_scheduler()
    ts[0][0].hps["a"] = 999
    assert ts[0][0].hps == {"a": 1}


def test_adding_task_again_merges_edges_and_subtasks():
    ts = TaskScheduler()
    ts.add_task("a", subtasks=[("s0", Env(), None)])
    ts.add_task("b")
    ts.add_task("a", children="b", subtasks=[("s1", Env(), {"k": [1, 2]})])
    assert ts.get_sorted_task_ids() == ["a", "b"]
    assert ts.get_subtask_ids("a") == ["s0", "s1"]
    assert ts.get_children_task_ids("a") == ["b"]


def test_show_info_logs(caplog):
    ts = small_scheduler()
    ts.add_task("extra", add_to_dag=False)
    with caplog.at_level(logging.INFO, logger="multiml.task_scheduler"):
        ts.show_info()
    text = caplog.text
    assert "63 combination(s)" in text
    assert "task 'fit' (parents=['pre'])" in text
    assert "subtask 'f0': Env, 6 point(s)" in text
    assert "task 'extra' (outside the DAG)" in text


def test_pickle_round_trip():
    ts = small_scheduler()
    restored = pickle.loads(pickle.dumps(ts))
    assert restored.get_sorted_task_ids() == ts.get_sorted_task_ids()
    assert len(restored) == len(ts)
    assert ids(restored[17]) == ids(ts[17])


def test_docstring_examples_run():
    import doctest

    import multiml.task_scheduler

    result = doctest.testmod(multiml.task_scheduler)
    assert result.attempted > 0
    assert result.failed == 0
