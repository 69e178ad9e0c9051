"""BaseTask: ids, hyperparameters (set/reset, Saver references) and lifecycle."""

from __future__ import annotations

import doctest

import pytest

from multiml import Saver, StoreGate
from multiml.task.basic import BaseTask, base


class Toy(BaseTask):
    """A task with a few hyperparameters of different kinds."""

    def __init__(self, depth: int = 2, options: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._depth = depth
        self._options = dict(options or {})
        self._label = "toy"

    def execute(self) -> int:
        return self._depth * 10


def _state(task: BaseTask) -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(task).items()}


# ----------------------------------------------------------------------------- ids
def test_ids_default_to_none_and_name_to_the_class_name():
    task = Toy()
    assert (task.task_id, task.subtask_id, task.job_id, task.trial_id) == (None,) * 4
    assert task.name == "Toy"
    assert Toy(name="deep").name == "deep"
    assert "Toy" in repr(task)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({}, "task_Toy"),
        ({"task_id": "step0"}, "step0_Toy"),
        ({"task_id": "step0", "subtask_id": "mlp"}, "step0_mlp"),
        ({"task_id": "step0", "subtask_id": "mlp", "job_id": 3}, "step0_mlp_job3"),
        ({"task_id": "s", "subtask_id": "m", "job_id": 0, "trial_id": 2}, "s_m_job0_trial2"),
        ({"task_id": "s", "subtask_id": "m", "trial_id": 1}, "s_m_trial1"),
    ],
)
def test_get_unique_id(ids, expected):
    task = Toy()
    for key, value in ids.items():
        setattr(task, key, value)
    assert task.get_unique_id() == expected


def test_unique_ids_differ_between_jobs_and_trials():
    ids = set()
    for job in range(3):
        for trial in (None, 0, 1):
            task = Toy()
            task.task_id, task.subtask_id, task.job_id, task.trial_id = "s", "m", job, trial
            ids.add(task.get_unique_id())
    assert len(ids) == 9


def test_attaching_a_storegate_selects_the_task_data_id():
    sg = StoreGate(data_id="first")
    sg.set_data_id("second")
    task = Toy(storegate=sg, data_id="first")
    assert task.storegate is sg
    assert sg.data_id == "first"
    sg.set_data_id("second")
    task.storegate = sg
    assert sg.data_id == "first"
    assert Toy(storegate=sg).storegate.data_id == "first"  # no data_id: left as it is


def test_saver_property():
    saver = Saver(mode="dict")
    task = Toy(saver=saver)
    assert task.saver is saver
    task.saver = None
    assert task.saver is None


# -------------------------------------------------------------------- set_hps
def test_set_hps_sets_existing_attributes_and_returns_them():
    task = Toy()
    result = task.set_hps({"depth": 5, "label": "deep"})
    assert result == {"depth": 5, "label": "deep"}
    assert task.execute() == 50
    assert task._label == "deep"
    assert task.resolved_hps == {"depth": 5, "label": "deep"}


def test_set_hps_unknown_key_names_it_and_the_allowed_keys():
    task = Toy()
    with pytest.raises(KeyError) as info:
        task.set_hps({"dpeth": 3})
    message = str(info.value)
    assert "'dpeth'" in message
    assert "Toy" in message
    for allowed in ("depth", "options", "label"):
        assert allowed in message


@pytest.mark.parametrize("key", ["saver", "storegate", "task_id", "job_id", "_depth", "", 3])
def test_set_hps_refuses_bookkeeping_and_private_attributes(key):
    task = Toy()
    with pytest.raises(KeyError):
        task.set_hps({key: 1})
    assert key not in task.hyperparameter_names()


def test_hyperparameter_names_lists_settable_attributes_only():
    names = Toy().hyperparameter_names()
    assert {"depth", "options", "label", "name", "data_id"} <= set(names)
    assert not {"saver", "storegate", "task_id", "hps_originals"} & set(names)


@pytest.mark.parametrize(
    "params",
    [
        {"depth": 7, "nope": 1},  # good key first, then a bad one
        {"nope": 1, "depth": 7},
        {"depth": 7, "label": "saver__missing__x"},  # a bad Saver reference
    ],
)
def test_a_failed_set_hps_changes_nothing(params):
    task = Toy(saver=Saver(mode="dict"))
    task.set_hps({"label": "before"})
    before = _state(task)
    with pytest.raises(KeyError):
        task.set_hps(params)
    assert _state(task) == before
    assert task.resolved_hps == {"label": "before"}


def test_reset_hps_restores_every_attribute():
    task = Toy(depth=3, options={"a": 1})
    before = _state(task)
    task.set_hps({"depth": 9, "options": {"b": 2}})
    task.set_hps({"depth": 11, "label": "x"})
    assert task.execute() == 110
    task.reset_hps()
    assert _state(task) == before
    assert task.resolved_hps == {}
    task.reset_hps()  # idempotent
    assert _state(task) == before


def test_dict_values_are_copied_so_the_callers_dict_never_changes():
    task = Toy()
    options = {"a": 1}
    task.set_hps({"options": options})
    task._options["b"] = 2  # the task changing its own dict ...
    assert options == {"a": 1}  # ... leaves the caller's alone


# --------------------------------------------------------- Saver references
@pytest.fixture
def saver():
    saver = Saver(mode="dict")
    saver["step0"] = {"subtask_id": "mlp", "k": 3, "model__layers": [4, 8], "lr": 0.1}
    return saver


def test_saver_reference_is_resolved_at_set_time(saver):
    task = Toy(saver=saver)
    result = task.set_hps({"depth": "saver__step0__k", "label": "plain"})
    assert result == {"depth": 3, "label": "plain"}
    assert task._depth == 3
    saver["step0"] = {"k": 99}  # later changes do not follow
    assert task._depth == 3
    assert task.resolved_hps["depth"] == 3


def test_saver_reference_sub_key_may_contain_double_underscores(saver):
    task = Toy(saver=saver)
    assert task.set_hps({"options": "saver__step0__model__layers"}) == {"options": [4, 8]}
    assert task._options == [4, 8]


def test_saver_reference_without_saver_is_a_clear_error():
    task = Toy()
    with pytest.raises(ValueError, match="no saver"):
        task.set_hps({"depth": "saver__step0__k"})
    assert task._depth == 2


def test_saver_reference_to_a_missing_key_lists_the_keys(saver):
    task = Toy(saver=saver)
    with pytest.raises(KeyError) as info:
        task.set_hps({"depth": "saver__step9__k"})
    message = str(info.value)
    assert "'step9'" in message and "step0" in message and "'depth'" in message


def test_saver_reference_to_a_missing_entry_lists_the_entries(saver):
    task = Toy(saver=saver)
    with pytest.raises(KeyError) as info:
        task.set_hps({"depth": "saver__step0__kk"})
    message = str(info.value)
    assert "'kk'" in message and "'k'" in message and "subtask_id" in message


@pytest.mark.parametrize("value", ["saver__", "saver__step0", "saver__step0__", "saver____k"])
def test_malformed_saver_reference_is_a_clear_error(saver, value):
    task = Toy(saver=saver)
    with pytest.raises(ValueError, match="saver__KEY__SUB"):
        task.set_hps({"depth": value})


def test_strings_that_do_not_start_with_the_prefix_are_kept(saver):
    task = Toy(saver=saver)
    assert task.set_hps({"label": "my_saver__step0__k"}) == {"label": "my_saver__step0__k"}


# ----------------------------------------------------------------- lifecycle
def test_execute_must_be_implemented_and_finalize_is_a_no_op():
    with pytest.raises(NotImplementedError, match="BaseTask"):
        BaseTask().execute()
    assert BaseTask().finalize() is None
    assert Toy().execute() == 20


def test_module_doctests():
    assert doctest.testmod(base).failed == 0
