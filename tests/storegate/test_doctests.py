"""The examples in the storegate docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "multiml.storegate",
    "multiml.storegate.storegate",
    "multiml.storegate.views",
    "multiml.storegate.numpy_backend",
    "multiml.storegate.hybrid_backend",
    "multiml.storegate._args",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
