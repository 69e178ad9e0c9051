"""Numpy-backend specifics: zero-copy reads, amortised appends, compact pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np

from multiml import StoreGate


def test_basic_reads_share_memory_with_the_store():
    sg = StoreGate()
    sg.add_data("x", np.zeros((100, 8)), do_compile=True)
    whole = sg.get_data("x")
    assert np.shares_memory(whole, sg.get_data("x", index=(10, 20)))
    assert np.shares_memory(whole, sg["train"]["x"][5])
    assert np.shares_memory(whole, sg.get_data(["x"], index=slice(0, 50))[0])
    assert not np.shares_memory(whole, sg.get_data("x", index=np.array([1, 2])))
    assert not np.shares_memory(whole, sg.get_data("x", "all"))


def test_appending_many_chunks_reallocates_logarithmically():
    sg = StoreGate()
    sg.add_data("x", np.zeros((10, 4)))
    backend = sg._backend
    buffers = set()
    for i in range(2000):
        sg.add_data("x", np.full((10, 4), i, dtype=np.float64))
        buffers.add(id(backend._column(("default", "train", "x")).buf))
    assert len(buffers) < 30  # geometric growth, not one copy per append
    sg.compile()
    out = sg.get_data("x")
    assert out.shape == (20010, 4)
    np.testing.assert_array_equal(out[-10:], np.full((10, 4), 1999.0))


def test_pickle_carries_only_used_rows():
    sg = StoreGate()
    sg.add_data("x", np.zeros(1000))
    sg.add_data("x", np.zeros(10))  # grows capacity to 1500
    assert len(sg._backend._column(("default", "train", "x")).buf) == 1500
    size = len(pickle.dumps(sg))
    assert 1010 * 8 < size < 1100 * 8
    clone = pickle.loads(size and pickle.dumps(sg))
    clone.compile()
    assert clone.get_data("x").shape == (1010,)


def test_owned_arrays_are_not_copied_twice():
    sg = StoreGate()
    x = np.arange(10.0)
    sg.add_data("x", x, shuffle=True, do_compile=True)  # shuffled copy is stored as is
    stored = sg.get_data("x")
    assert not np.shares_memory(stored, x)
    sg.astype("x", np.float32)
    assert sg.get_data("x").dtype == np.float32


def test_numpy_backend_imports_neither_zarr_nor_torch():
    code = (
        "import sys, numpy as np\n"
        "from multiml import StoreGate\n"
        "sg = StoreGate(); sg.add_data('x', np.zeros(2), do_compile=True); sg.get_data('x')\n"
        "print('zarr' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
