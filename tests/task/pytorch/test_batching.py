"""Whole-batch data helpers of the PyTorch tasks."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from multiml.task.pytorch import batching
from multiml.task.pytorch.batching import (
    BatchSource,
    equal_length_batches,
    index_batches,
    resolve_batch_size,
    to_tensor,
)


# ---------------------------------------------------------------- to_tensor
def test_float_arrays_become_float32():
    out = to_tensor(np.arange(6, dtype=np.float64).reshape(3, 2))
    assert out.dtype == torch.float32 and out.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert to_tensor(np.zeros(3, dtype=np.float16)).dtype == torch.float32


def test_float32_arrays_share_memory():
    array = np.zeros((4, 2), dtype=np.float32)
    out = to_tensor(array)
    array[0, 0] = 5.0
    assert out[0, 0] == 5.0


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8, np.bool_])
def test_integer_targets_become_int64_and_inputs_keep_their_dtype(dtype):
    array = np.array([0, 1, 1], dtype=dtype)
    assert to_tensor(array, targets=True).dtype == torch.int64
    assert to_tensor(array).dtype == torch.from_numpy(array).dtype


def test_read_only_and_non_contiguous_arrays_are_copied():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    array.flags.writeable = False
    out = to_tensor(array)
    out[0, 0] = -1.0  # writable, and the source is untouched
    assert array[0, 0] == 0.0
    strided = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    assert to_tensor(strided).tolist() == strided.tolist()


def test_lists_none_and_tensors():
    tensor = torch.ones(2)
    out = to_tensor([np.zeros(2), None, tensor], targets=True)
    assert out[0].dtype == torch.float32 and out[1] is None and out[2] is tensor


# ---------------------------------------------------- gather / move / num_rows
def test_gather_move_and_num_rows_follow_lists():
    a, b = torch.arange(5), torch.arange(10).reshape(5, 2)
    index = torch.tensor([4, 1])
    got = batching.gather([a, None, b], index)
    assert got[0].tolist() == [4, 1] and got[1] is None and got[2].tolist() == [[8, 9], [2, 3]]
    moved = batching.move([a, (b,)], torch.device("cpu"))
    assert moved[0] is a and moved[1][0] is b
    assert batching.move(None, torch.device("cpu")) is None
    assert batching.num_rows([b, a]) == 5 and batching.num_rows(np.zeros((3, 2))) == 3


def test_batch_source_gathers_inputs_and_targets_together():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.arange(10, dtype=np.int32)
    source = BatchSource([x, x[:, :1]], y)
    assert len(source) == 10
    (x0, x1), yb = source.gather(torch.tensor([7, 2]))
    assert x0.tolist() == [[14, 15], [4, 5]] and x1.tolist() == [[14], [4]]
    assert yb.tolist() == [7, 2] and yb.dtype == torch.int64
    (x0, _), yb = source[slice(3, 5)]
    assert x0.tolist() == [[6, 7], [8, 9]] and yb.tolist() == [3, 4]
    (x0, _), _ = source[[1]]
    assert x0.tolist() == [[2, 3]]


def test_a_slice_gathers_a_view():
    x = np.zeros((6, 2), dtype=np.float32)
    source = BatchSource(x)
    view, targets = source.gather(slice(0, 3))
    assert targets is None
    x[1, 1] = 3.0
    assert view[1, 1] == 3.0


# --------------------------------------------------------------- batch sizes
@pytest.mark.parametrize(
    ("spec", "phase", "n", "expected"),
    [
        (32, "train", 100, 32),
        ({"train": 8, "valid": 16}, "valid", 100, 16),
        ({"train": 8, "default": 64}, "test", 100, 64),
        ({"type": "equal_length", "length": 10}, "valid", 100, 10),
        ({"type": "equal_length", "length": 10}, "train", 105, 11),
        ({"type": "equal_length", "length": 10}, "train", 3, 1),
    ],
)
def test_resolve_batch_size(spec, phase, n, expected):
    assert resolve_batch_size(spec, phase, n) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (0, "positive int"),
        (True, "expected an int"),
        (2.5, "expected an int"),
        ({"train": 8}, "no entry for phase 'test'"),
        ({"default": -1}, "positive int"),
        ({"type": "equal_length"}, "needs a positive int 'length'"),
        ({"type": "equal_length", "length": 0}, "needs a positive int 'length'"),
        ({"type": "bucketed", "length": 3}, "unknown type 'bucketed'; allowed: equal_length"),
    ],
)
def test_bad_batch_sizes_are_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_batch_size(spec, "test", 100)


def test_equal_length_batches():
    assert equal_length_batches({"type": "equal_length", "length": 5}) == 5
    assert equal_length_batches(64) is None
    assert equal_length_batches({"train": 64}) is None


# ------------------------------------------------------------- index batches
def test_index_batches_in_order_are_slices():
    batches = list(index_batches(10, 4, shuffle=False))
    assert all(isinstance(b, slice) for b in batches)
    assert [(b.start, b.stop) for b in batches] == [(0, 4), (4, 8), (8, 10)]
    assert list(index_batches(0, 4, shuffle=False)) == []


def test_shuffled_batches_cover_every_row_once_and_follow_the_generator():
    batches = list(index_batches(23, 5, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(batches).tolist()) == list(range(23))
    again = list(index_batches(23, 5, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not torch.equal(torch.cat(batches), torch.arange(23))


@pytest.mark.parametrize(("n", "count"), [(100, 7), (105, 10), (10, 10), (3, 5), (1, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_num_batches_gives_near_equal_batches(n, count, shuffle):
    batches = list(index_batches(n, 1, shuffle=shuffle, num_batches=count))
    sizes = [len(range(n)[b]) if isinstance(b, slice) else len(b) for b in batches]
    assert len(batches) == min(n, count)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    if not shuffle:
        assert batches[0].start == 0 and batches[-1].stop == n


def test_module_doctests():
    assert doctest.testmod(batching).failed == 0
