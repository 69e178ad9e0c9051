"""Zarr-backend specifics: reopening, on-disk layout, temporary stores, chunking."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest
import zarr

from multiml import StoreGate


def open_store(path, **kwargs) -> StoreGate:
    return StoreGate(backend="zarr", backend_args={"output_dir": str(path), **kwargs}, **{})


def test_reopen_sees_data_and_metadata(tmp_path, snapshot):
    sg = open_store(tmp_path)
    sg.set_data_id("first")
    sg.add_data("x", np.arange(30.0).reshape(10, 3), phase=(6, 2, 2))
    sg.add_data("label", np.arange(10), phase=(6, 2, 2))
    sg.compile(reset=True)
    sg.set_data_id("second")
    sg.add_data("zeta", np.zeros(4))
    sg.add_data("alpha", np.zeros(5))  # inconsistent and not compiled
    again = open_store(tmp_path)
    assert snapshot(again) == snapshot(sg)
    assert again.get_data_ids() == ["first", "second"]
    again.set_data_id("first")
    meta = again.get_metadata()
    assert meta["compiled"] and meta["sizes"] == {"train": 6, "valid": 2, "test": 2}
    assert again.get_var_names("train") == ["x", "label", "active"]
    np.testing.assert_array_equal(again.get_data("x", "all"), np.arange(30.0).reshape(10, 3))
    again.set_data_id("second")
    assert again.get_var_names() == ["zeta", "alpha"]
    assert not again.get_metadata()["compiled"]
    with pytest.raises(ValueError, match=r"zeta: 4, alpha: 5"):
        again.compile()


def test_on_disk_layout(tmp_path):
    sg = open_store(tmp_path, chunk_bytes=64)
    sg.set_data_id("ds")
    sg.add_data("x", np.arange(40.0).reshape(20, 2), phase=(0.5, 0.25, 0.25), do_compile=True)
    for phase in ("train", "valid", "test"):
        assert os.path.isfile(tmp_path / "ds" / phase / "x" / "zarr.json")
    root = zarr.open_group(str(tmp_path), mode="r")
    array = root["ds/valid/x"]
    np.testing.assert_array_equal(array[...], np.arange(40.0).reshape(20, 2)[10:15])
    assert array.chunks == (4, 2)  # 64 bytes / (2 * 8 bytes) rows per chunk
    assert root["ds"].attrs["multiml_storegate"] == {
        "compiled": True,
        "sizes": {"train": 10, "valid": 5, "test": 5},
    }
    assert root["ds/train"].attrs["multiml_storegate"] == {"var_names": ["x"]}
    assert root.attrs["multiml_storegate"]["data_ids"] == ["ds"]


def test_store_written_by_other_tools_in_the_layout_opens(tmp_path):
    root = zarr.open_group(str(tmp_path), mode="w")
    root.create_array("exp/train/b", data=np.arange(4))
    root.create_array("exp/train/a", data=np.ones((4, 2)))
    sg = open_store(tmp_path, **{})
    assert sg.get_data_ids() == ["exp"]
    sg.set_data_id("exp")
    assert sg.get_var_names("train") == ["a", "b"]  # no recorded order: sorted
    assert sg.get_metadata()["sizes"] is None
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("b"), np.arange(4))


def test_temporary_directory_is_removed_with_its_store():
    sg = StoreGate(backend="zarr")
    path = sg._backend.output_dir
    sg.add_data("x", np.zeros(3), do_compile=True)
    clone = pickle.loads(pickle.dumps(sg))
    del clone
    gc.collect()
    assert os.path.isdir(path)  # a clone going away does not remove the owner's data
    del sg
    gc.collect()
    assert not os.path.exists(path)


def test_pickle_reopens_by_path(tmp_path):
    sg = open_store(tmp_path)
    sg.add_data("x", np.zeros(100_000), do_compile=True)
    blob = pickle.dumps(sg)
    assert len(blob) < 2000  # the path travels, not the data
    clone = pickle.loads(blob)
    clone.update_data("x", 1.0, index=(0, 5))
    np.testing.assert_array_equal(open_store(tmp_path).get_data("x", index=(0, 6)), [1] * 5 + [0])


def test_appended_variables_are_rechunked_geometrically(tmp_path):
    sg = open_store(tmp_path, chunk_bytes=8 * 1024)
    sg.add_data("x", np.zeros(2))  # tiny first chunk: (2,)
    for i in range(300):
        sg.add_data("x", np.full(10, float(i)))
    array = zarr.open_group(str(tmp_path), mode="r")["default/train/x"]
    assert array.chunks[0] >= 512  # grew towards 8 KiB / 8 bytes = 1024 rows per chunk
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x")[-10:], np.full(10, 299.0))
    assert sg.get_var_shapes("x") == (3002,)


def test_compressors_option(tmp_path):
    sg = open_store(tmp_path, compressors="auto")
    sg.add_data("x", np.zeros(10_000), do_compile=True)
    array = zarr.open_group(str(tmp_path), mode="r")["default/train/x"]
    assert array.compressors  # zarr's default codec
    assert open_store(tmp_path).get_data("x").sum() == 0


def test_object_dtype_is_rejected_before_writing(tmp_path, snapshot):
    sg = open_store(tmp_path)
    sg.add_data("x", np.zeros(2))
    before = snapshot(sg)
    with pytest.raises(TypeError, match="cannot store variable 'o' of dtype object"):
        sg.add_data(["x", "o"], [np.zeros(2), np.array([{}, []], dtype=object)])
    assert snapshot(sg) == before


def test_bad_backend_args(tmp_path):
    with pytest.raises(ValueError, match="chunk_bytes must be an int"):
        open_store(tmp_path, chunk_bytes=0)
    with pytest.raises(ValueError, match=r"allowed: \['output_dir', 'chunk_bytes'"):
        StoreGate(backend="zarr", backend_args={"path": str(tmp_path)})
