"""Saver: the key → value store for results, hyperparameters and model weights.

A :class:`Saver` holds values in memory (``mode='dict'``) and/or in a directory on disk
(the persistent mode, named ``'zarr'`` for compatibility). Reads look in memory first,
then on disk; ``save()`` moves everything in memory to disk.

>>> saver = Saver(mode='dict')
>>> saver['result'] = {'metric_value': 0.25, 'subtask_hps': [{'layers': (16, 16)}]}
>>> saver['result']['subtask_hps'][0]['layers']
(16, 16)
>>> 'result' in saver, saver.keys()
(True, ['result'])

On disk every key is one file in ``save_dir``: ``<key>.npy`` for a numpy array, else
``<key>.json`` (JSON with tagged objects for what JSON lacks: tuples, numpy scalars and
arrays, non-str dict keys, sets, bytes, complex numbers; NaN and infinities use the
``NaN``/``Infinity`` extension that Python's ``json`` reads), the key percent-quoted into
a file name. Every write goes to a temporary file in the same directory and is renamed over
the old file, so a crash leaves the old value or the new one, never a half-written file;
keys are found by listing the directory, so several processes may write distinct keys
into one ``save_dir`` at the same time. Model weights written by :meth:`Saver.dump_ml`
live in ``save_dir/models/``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

import numpy as np

from multiml.fileio import TMP_SUFFIX, atomic_write

__all__ = ["MODES", "KeySet", "Saver", "WriteLog"]

logger = logging.getLogger(__name__)

MODES: tuple[str, str] = ("dict", "zarr")
"""``'dict'``: values live in memory; ``'zarr'``: values are written to ``save_dir``."""

_JSON = ".json"
_NPY = ".npy"
_MODEL_DIR = "models"
_MODEL_SUFFIX = ".pt"
_TAG = "__multiml_type__"
_RECORD_FIELDS = ("model_path", "ml_type", "timestamp")
_MAX_NAME_BYTES = 255
_ML_TYPES = ("pytorch",)


# ---------------------------------------------------------------------- write tracking
class KeySet(AbstractSet):
    """An insertion-ordered set of keys (supports ``in``, iteration, ``len``, ``==``)."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"KeySet({list(self._items)!r})"

    def _add(self, key: str) -> None:
        self._items.pop(key, None)  # re-adding moves the key to the end
        self._items[key] = None

    def _discard(self, key: str) -> None:
        self._items.pop(key, None)


class WriteLog:
    """What a :meth:`Saver.track_writes` block changed, as its net effect.

    ``written``: keys that exist after the block with a value set inside it (in order of
    their last write). ``deleted``: keys removed inside the block and absent afterwards.
    A key is never in both.
    """

    def __init__(self) -> None:
        self.written = KeySet()
        self.deleted = KeySet()

    def _record(self, key: str, exists: bool) -> None:
        if exists:
            self.deleted._discard(key)
            self.written._add(key)
        else:
            self.written._discard(key)
            self.deleted._add(key)

    def __repr__(self) -> str:
        return f"WriteLog(written={list(self.written)}, deleted={list(self.deleted)})"


# ---------------------------------------------------------------------- encoding
def _encode(value: Any, where: str) -> Any:
    """Turn ``value`` into JSON-compatible data, tagging what JSON cannot express."""
    if isinstance(value, np.generic):  # before float/int: np.float64 subclasses float
        if value.dtype.kind not in "biufcU":
            raise TypeError(f"cannot store numpy scalar of dtype {value.dtype} at {where}")
        return {_TAG: "numpy", "dtype": value.dtype.str, "value": _encode(value.item(), where)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"cannot store a numpy array of dtype object at {where}")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {_TAG: "ndarray", "npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass (e.g. StrEnum) is stored as its text
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, complex):
        return {_TAG: "complex", "real": value.real, "imag": value.imag}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        items = [_encode(v, f"{where}{{...}}") for v in sorted(value, key=repr)]
        return {_TAG: type(value).__name__ if type(value) is frozenset else "set", "items": items}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if _TAG not in value and all(type(k) is str for k in value):
            return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {
            _TAG: "dict",
            "items": [
                [_encode(k, f"{where} key {k!r}"), _encode(v, f"{where}[{k!r}]")]
                for k, v in value.items()
            ],
        }
    if isinstance(value, Sequence):  # e.g. range, OmegaConf ListConfig: stored as a list
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"cannot store {type(value).__name__} at {where} in the persistent mode; storable: "
        "None, bool, int, float, complex, str, bytes, list, tuple, set, dict, numpy "
        "scalars and arrays (use mode='dict' to keep other objects in memory)"
    )


def _dumps(value: Any, key: str) -> bytes:
    """The JSON file content of ``value`` (``TypeError`` if it cannot be stored)."""
    return json.dumps(_encode(value, repr(key)), ensure_ascii=False, indent=1).encode("utf-8")


def _decode(data: Any) -> Any:
    """Inverse of :func:`_encode`."""
    if isinstance(data, list):
        return [_decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: _decode(v) for k, v in data.items()}
    if tag == "numpy":
        return np.dtype(data["dtype"]).type(_decode(data["value"]))
    if tag == "ndarray":
        return np.load(io.BytesIO(base64.b64decode(data["npy"])), allow_pickle=False)
    if tag == "complex":
        return complex(data["real"], data["imag"])
    if tag == "bytes":
        return base64.b64decode(data["base64"])
    if tag == "tuple":
        return tuple(_decode(v) for v in data["items"])
    if tag == "set":
        return {_decode(v) for v in data["items"]}
    if tag == "frozenset":
        return frozenset(_decode(v) for v in data["items"])
    if tag == "dict":
        return {_decode(k): _decode(v) for k, v in data["items"]}
    raise ValueError(f"unknown stored type tag {tag!r}")


def _check_basic(value: Any, where: str) -> None:
    """Accept str/int/float/bool/None and lists/tuples/str-keyed dicts of those."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_basic(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"dump_ml: kwarg {where} has a non-str dict key {k!r}")
            _check_basic(item, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"dump_ml: kwarg {where} has type {type(value).__name__}; allowed: str, int, "
        "float, bool, None and lists/dicts of those"
    )


# ---------------------------------------------------------------------- files
def _file_stem(key: str) -> str:
    """The reversible file-name form of ``key``."""
    return quote(key, safe="")


def _key_of_file(name: str) -> str | None:
    """The key stored in file ``name``, or None if the Saver would not have named it so."""
    for suffix in (_JSON, _NPY):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            key = unquote(stem)
            return key if _file_stem(key) == stem else None
    return None


def _hydra_output_dir() -> str | None:
    """The output directory of the running Hydra job, or None outside Hydra."""
    if "hydra" not in sys.modules:  # no Hydra run can be active without hydra imported
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return str(HydraConfig.get().runtime.output_dir)


class Saver:
    """Key → value store in memory (``'dict'``) and/or on disk (``'zarr'``).

    Args:
        save_dir: directory of the persistent store. ``None``: the output directory of
            the running Hydra job, otherwise a fresh temporary directory (created when
            first needed, its path logged at INFO).
        serial_id: optional sub-directory of ``save_dir`` (several runs under one dir).
        mode: where writes go by default: ``'dict'`` (memory) or ``'zarr'`` (disk).
        recreate: remove the values (and model files) already stored in the directory.
            Only files the Saver recognises as its own are removed, so a Hydra run
            directory keeps its config and logs.

    Values written in ``'dict'`` mode are kept as the objects themselves (like a dict);
    values written to disk must be storable (see the module docstring) and are read back
    as fresh objects of the same types: tuples stay tuples, ``np.float32`` stays
    ``np.float32``, arrays keep dtype and shape.

    >>> saver = Saver(mode='dict')
    >>> saver.add('step0', {'subtask_id': 'mlp', 'model__layers': [8, 8]})
    >>> saver['step0']['subtask_id']
    'mlp'
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str] | None = None,
        serial_id: str | int | None = None,
        mode: str = "zarr",
        recreate: bool = False,
    ) -> None:
        self._mode = self._check_mode(mode, "mode")
        if serial_id is not None:
            sub = Path(str(serial_id))
            if not str(serial_id) or sub.is_absolute() or ".." in sub.parts:
                raise ValueError(
                    f"serial_id must be a relative sub-directory name, got {serial_id!r}"
                )
        self._serial_id = None if serial_id is None else str(serial_id)
        if save_dir is None:
            save_dir = _hydra_output_dir()
        self._root: Path | None = None
        if save_dir is not None:
            root = Path(save_dir)
            self._root = root / self._serial_id if self._serial_id else root
        self._memory: dict[str, Any] = {}
        self._memory_models: dict[str, dict[str, Any]] = {}  # dump_ml state dicts, dict mode
        self._logs: list[WriteLog] = []
        if recreate and self._root is not None:
            self._clear_storage(self._root)
        if self._mode == "zarr":
            self._storage_dir()

    # ------------------------------------------------------------------ properties
    @property
    def save_dir(self) -> str:
        """The directory of the persistent store (created if it does not exist yet)."""
        return str(self._storage_dir())

    @property
    def mode(self) -> str:
        """Where writes go by default: ``'dict'`` or ``'zarr'``."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Change where writes go by default (``'dict'`` or ``'zarr'``)."""
        self._mode = self._check_mode(mode, "mode")

    # ------------------------------------------------------------------ mapping API
    def __setitem__(self, key: str, obj: Any) -> None:
        self.add(key, obj)

    def __getitem__(self, key: str) -> Any:
        if key in self._memory:
            return self._memory[key]
        path = self._storage_file(key) if isinstance(key, str) else None
        if path is None:
            raise KeyError(f"unknown key {key!r}; {self._describe_keys()}")
        return self._read_file(key, path)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._memory or self._storage_file(key) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self, mode: str | None = None) -> list[str]:
        """Stored keys: memory ones first, then those only on disk (sorted).

        ``mode='dict'`` or ``'zarr'`` lists only that location.
        """
        if mode is None:
            return [*self._memory, *(k for k in self._storage_keys() if k not in self._memory)]
        if self._check_mode(mode, "mode") == "dict":
            return list(self._memory)
        return self._storage_keys()

    def add(self, key: str, obj: Any, mode: str | None = None) -> None:
        """Store ``obj`` under ``key`` in memory or on disk (default: the Saver's mode).

        A value in memory shadows the same key on disk until :meth:`save`; a disk write
        drops the key from memory. An unstorable value raises ``TypeError`` and changes
        nothing.
        """
        self._check_key(key)
        if self._check_mode(mode or self._mode, "mode") == "dict":
            self._memory[key] = obj
            self._memory_models.pop(key, None)
        else:
            self._write_storage(key, obj)
            self._memory.pop(key, None)
            self._memory_models.pop(key, None)
        self._record(key)

    def delete(self, key: str, mode: str | None = None) -> None:
        """Delete ``key`` everywhere (with its model files), or only from memory/disk.

        ``KeyError`` if the key is not stored where asked.
        """
        where = None if mode is None else self._check_mode(mode, "mode")
        present = {
            "dict": key in self._memory,
            "zarr": isinstance(key, str) and self._storage_file(key) is not None,
        }
        if not (any(present.values()) if where is None else present[where]):
            location = {None: "", "dict": " in memory", "zarr": " on disk"}[where]
            raise KeyError(f"unknown key {key!r}{location}; {self._describe_keys(where)}")
        if where in (None, "dict"):
            self._memory.pop(key, None)
            self._memory_models.pop(key, None)
        if where in (None, "zarr"):
            self._unlink_storage(key)
        if where is None:
            self._remove_model_files(key)
        self._record(key)

    # ------------------------------------------------------------------ moving values
    def save(self) -> None:
        """Move every value held in memory to disk.

        All values are checked first: if one cannot be stored, nothing is written.
        """
        commits = [
            self._prepare_storage(key, value, self._memory_models.get(key))
            for key, value in self._memory.items()
        ]
        for key, commit in zip(list(self._memory), commits, strict=True):
            commit()
            del self._memory[key]
            self._memory_models.pop(key, None)

    def to_storage(self, key: str) -> None:
        """Move ``key`` from memory to disk."""
        if key not in self._memory:
            raise KeyError(f"key {key!r} is not in memory; {self._describe_keys('dict')}")
        self._prepare_storage(key, self._memory[key], self._memory_models.get(key))()
        del self._memory[key]
        self._memory_models.pop(key, None)

    def to_memory(self, key: str) -> None:
        """Move ``key`` from disk to memory (model files stay on disk)."""
        path = self._storage_file(key) if isinstance(key, str) else None
        if path is None:
            raise KeyError(f"key {key!r} is not on disk; {self._describe_keys('zarr')}")
        self._memory[key] = self._read_file(key, path)
        self._unlink_storage(key)

    # ------------------------------------------------------------------ models
    def dump_ml(
        self, key: str, suffix: str | int | None = None, ml_type: str = "pytorch", **kwargs: Any
    ) -> None:
        """Save model weights and metadata under ``key`` (or ``f'{key}__{suffix}'``).

        Args:
            key: record key.
            suffix: optional suffix appended as ``__suffix``.
            ml_type: the model framework; ``'pytorch'`` when a model is given.
            **kwargs: ``model`` (a ``torch.nn.Module``, optional): its ``state_dict()`` is
                saved with ``torch.save`` to ``save_dir/models/`` (disk mode) or kept as
                a CPU copy in memory (dict mode). Every other kwarg is metadata and must
                be str/int/float/bool/None or lists/dicts of those.

        The record stored under the key is ``{**metadata, 'model_path', 'ml_type',
        'timestamp'}``; ``model_path`` is relative to ``save_dir`` (``None`` without a
        model or in dict mode). A new dump of the same key replaces the old model file.

        >>> import torch
        >>> saver = Saver(mode='dict')
        >>> saver.dump_ml('step0', suffix='mlp', model=torch.nn.Linear(2, 1), epochs=3)
        >>> record = saver.load_ml('step0', 'mlp')
        >>> record['epochs'], record['state_dict']['weight'].shape
        (3, torch.Size([1, 2]))
        """
        name = self._record_key(key, suffix)
        self._check_key(name)
        model = kwargs.pop("model", None)
        reserved = sorted(set(kwargs) & {*_RECORD_FIELDS, "state_dict"})
        if reserved:
            raise ValueError(f"dump_ml: kwargs {reserved} are reserved for the record itself")
        for kwarg, value in kwargs.items():
            _check_basic(value, repr(kwarg))
        if not isinstance(ml_type, str):
            raise TypeError(f"dump_ml: ml_type must be a str, got {ml_type!r}")
        state_dict = None
        if model is not None:
            import torch

            if not isinstance(model, torch.nn.Module):
                raise TypeError(
                    f"dump_ml: model must be a torch.nn.Module, got {type(model).__name__}"
                )
            if ml_type not in _ML_TYPES:
                raise ValueError(
                    f"dump_ml: cannot save a model of ml_type {ml_type!r}; allowed: {_ML_TYPES}"
                )
            state_dict = model.state_dict()
        record = {
            **copy.deepcopy(kwargs),
            "model_path": None,
            "ml_type": ml_type,
            "timestamp": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        if self._mode == "dict":
            self._memory[name] = record
            self._memory_models.pop(name, None)
            if state_dict is not None:
                self._memory_models[name] = _cpu_copy(state_dict)
        else:
            if state_dict is None:
                self._write_storage(name, record)
                self._remove_model_files(name)
            else:
                self._prepare_storage(name, record, state_dict)()
            self._memory.pop(name, None)
            self._memory_models.pop(name, None)
        self._record(name)

    def load_ml(self, key: str, suffix: str | int | None = None) -> dict[str, Any]:
        """The record written by :meth:`dump_ml` plus ``'state_dict'``.

        The weights are loaded with ``torch.load(..., weights_only=True,
        map_location='cpu')``; ``model_path`` is returned as an absolute path.
        ``state_dict`` is ``None`` when no model was dumped.
        """
        name = self._record_key(key, suffix)
        record = self[name]
        if not (isinstance(record, dict) and all(f in record for f in _RECORD_FIELDS)):
            raise ValueError(f"key {name!r} does not hold a dump_ml record")
        result = dict(record)
        if name in self._memory and name in self._memory_models:
            result["state_dict"] = _cpu_copy(self._memory_models[name])
        elif record["model_path"] is not None:
            import torch

            path = self._storage_dir() / record["model_path"]
            if not path.is_file():
                raise FileNotFoundError(
                    f"model file {path} of key {name!r} is missing (removed, or superseded "
                    "by a later dump_ml of the same key)"
                )
            result["state_dict"] = torch.load(path, weights_only=True, map_location="cpu")
            result["model_path"] = str(path)
        else:
            result["state_dict"] = None
        return result

    # ------------------------------------------------------------------ tracking
    @contextlib.contextmanager
    def track_writes(self) -> Iterator[WriteLog]:
        """Record the keys written and deleted inside the block (scopes may nest).

        >>> saver = Saver(mode='dict')
        >>> with saver.track_writes() as log:
        ...     saver['a'] = 1
        >>> list(log.written), list(log.deleted)
        (['a'], [])
        """
        log = WriteLog()
        self._logs.append(log)
        try:
            yield log
        finally:
            self._logs.remove(log)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_logs"] = []  # tracking scopes belong to the process that opened them
        return state

    def __repr__(self) -> str:
        where = "unset" if self._root is None else str(self._root)
        return f"Saver(save_dir={where!r}, mode={self._mode!r})"

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_mode(mode: Any, argument: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown {argument} {mode!r}; allowed: {list(MODES)}")
        return mode

    @staticmethod
    def _check_key(key: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"Saver keys must be str, got {type(key).__name__} {key!r}")
        longest = len(_file_stem(key)) + len(_JSON)
        if longest > _MAX_NAME_BYTES:
            raise ValueError(
                f"key {key[:40]!r}... is too long for a file name ({longest} bytes "
                f"quoted, at most {_MAX_NAME_BYTES})"
            )

    @staticmethod
    def _record_key(key: str, suffix: str | int | None) -> str:
        return key if suffix is None else f"{key}__{suffix}"

    def _record(self, key: str) -> None:
        if self._logs:
            exists = key in self
            for log in self._logs:
                log._record(key, exists)

    def _describe_keys(self, mode: str | None = None) -> str:
        keys = self.keys(mode)
        shown = ", ".join(repr(k) for k in keys[:20])
        more = f", ... ({len(keys)} keys)" if len(keys) > 20 else ""
        return f"available keys: [{shown}{more}]" if keys else "no keys stored"

    def _storage_dir(self) -> Path:
        """The persistent directory, created (and a temporary one chosen) if needed."""
        if self._root is None:
            base = Path(tempfile.mkdtemp(prefix="multiml_saver_"))
            self._root = base / self._serial_id if self._serial_id else base
            logger.info("Saver: no save_dir given, using temporary directory %s", self._root)
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def _storage_keys(self) -> list[str]:
        if self._root is None:
            return []
        keys = set()
        try:
            with os.scandir(self._root) as entries:
                for entry in entries:
                    key = _key_of_file(entry.name)
                    if key is not None and entry.is_file():
                        keys.add(key)
        except FileNotFoundError:
            return []
        return sorted(keys)

    def _storage_file(self, key: str) -> Path | None:
        """The file holding ``key`` on disk (the newer one if both formats exist)."""
        if self._root is None:
            return None
        found = []
        for suffix in (_JSON, _NPY):
            path = self._root / f"{_file_stem(key)}{suffix}"
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                found.append((path.stat().st_mtime_ns, suffix == _NPY, path))
        return max(found)[2] if found else None

    @staticmethod
    def _read_file(key: str, path: Path) -> Any:
        if path.suffix == _NPY:
            return np.load(path, allow_pickle=False)
        try:
            return _decode(json.loads(path.read_bytes()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError) as exc:
            raise ValueError(f"stored value of key {key!r} ({path}) is unreadable: {exc}") from exc

    def _prepare_storage(
        self, key: str, value: Any, state_dict: Mapping[str, Any] | None = None
    ) -> Callable[[], None]:
        """Validate and encode ``value`` now; the returned callable writes it to disk.

        ``state_dict``: weights of a ``dump_ml`` record, written to a new model file whose
        path goes into the record (the record's older model files are removed after).
        """
        self._check_key(key)
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            return lambda: self._commit_file(
                key, _NPY, lambda stream: np.save(stream, value, allow_pickle=False)
            )
        payload = _dumps(value, key)
        if state_dict is None:
            return lambda: self._commit_file(key, _JSON, lambda stream: stream.write(payload))

        def commit_record() -> None:
            record = {**value, "model_path": self._write_model(key, state_dict)}
            content = _dumps(record, key)
            self._commit_file(key, _JSON, lambda stream: stream.write(content))
            self._remove_model_files(key, keep=record["model_path"])

        return commit_record

    def _commit_file(self, key: str, suffix: str, write: Callable[[IO[bytes]], Any]) -> None:
        """Atomically write the file of ``key`` and drop its file of the other format."""
        directory = self._storage_dir()
        atomic_write(directory / f"{_file_stem(key)}{suffix}", write)
        other = _JSON if suffix == _NPY else _NPY
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{_file_stem(key)}{other}").unlink()

    def _write_storage(self, key: str, value: Any) -> None:
        self._prepare_storage(key, value)()

    def _unlink_storage(self, key: str) -> None:
        if self._root is None:
            return
        for suffix in (_JSON, _NPY):
            with contextlib.suppress(FileNotFoundError):
                (self._root / f"{_file_stem(key)}{suffix}").unlink()

    def _write_model(self, key: str, state_dict: Mapping[str, Any]) -> str:
        """Save ``state_dict`` to a new file under ``models/``; return its relative path."""
        import torch

        name = f"{_file_stem(key)}@{uuid.uuid4().hex[:12]}{_MODEL_SUFFIX}"
        if len(name) > _MAX_NAME_BYTES:
            raise ValueError(f"key {key[:40]!r}... is too long for a model file name")
        model_dir = self._storage_dir() / _MODEL_DIR
        model_dir.mkdir(exist_ok=True)
        atomic_write(model_dir / name, lambda stream: torch.save(dict(state_dict), stream))
        return f"{_MODEL_DIR}/{name}"

    def _remove_model_files(self, key: str, keep: str | None = None) -> None:
        """Remove the model files of ``key`` except ``keep`` (a relative model path)."""
        if self._root is None:
            return
        model_dir = self._root / _MODEL_DIR
        prefix = f"{_file_stem(key)}@"
        with contextlib.suppress(FileNotFoundError), os.scandir(model_dir) as entries:
            stale = [
                entry.name
                for entry in entries
                if entry.name.startswith(prefix)
                and entry.name.endswith(_MODEL_SUFFIX)
                and f"{_MODEL_DIR}/{entry.name}" != keep
            ]
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    (model_dir / name).unlink()

    @staticmethod
    def _clear_storage(root: Path) -> None:
        """Remove the Saver's own files from ``root`` (``recreate=True``)."""
        if not root.is_dir():
            return
        removed = 0
        for entry in root.iterdir():
            own_tmp = entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)
            if entry.is_file() and (_key_of_file(entry.name) is not None or own_tmp):
                entry.unlink()
                removed += 1
        model_dir = root / _MODEL_DIR
        if model_dir.is_dir():
            for entry in model_dir.iterdir():
                if entry.is_file() and entry.suffix in (_MODEL_SUFFIX, TMP_SUFFIX):
                    entry.unlink()
                    removed += 1
            with contextlib.suppress(OSError):
                model_dir.rmdir()
        logger.info("Saver: recreate=True removed %d stored file(s) from %s", removed, root)


def _cpu_copy(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A detached CPU copy of a state dict (tensors cloned, other entries deep-copied)."""
    import torch

    return {
        name: value.detach().to("cpu", copy=True)
        if isinstance(value, torch.Tensor)
        else copy.deepcopy(value)
        for name, value in state_dict.items()
    }
