"""Data sources for the Hydra app (and anyone filling a StoreGate).

Each loader is called as ``loader(storegate, **options)``: it adds the variables to the
store's current data_id and compiles it.
"""

from multiml.data.files import load_npy, load_npz, load_zarr
from multiml.data.iris import load_iris
from multiml.data.synthetic import generate_two_step, load_two_step

__all__ = ["generate_two_step", "load_iris", "load_npy", "load_npz", "load_two_step", "load_zarr"]
