"""StoreGate, the named column store (SPEC §1): ``data_id`` → phase → variable.

>>> from multiml.storegate import StoreGate
>>> sg = StoreGate(backend='numpy', data_id='demo')

See :mod:`multiml.storegate.storegate` for the behaviour, and the backend modules for
storage details (:mod:`~multiml.storegate.zarr_backend` documents the on-disk layout).
"""

from __future__ import annotations

from multiml.storegate.storegate import BACKENDS, NotCompiledError, StoreGate
from multiml.storegate.tracking import KeySet, WriteLog
from multiml.storegate.views import PhaseView, VarView

__all__ = [
    "BACKENDS",
    "KeySet",
    "NotCompiledError",
    "PhaseView",
    "StoreGate",
    "VarView",
    "WriteLog",
]
